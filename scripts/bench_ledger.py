"""What the ledger costs a load: the store's writes of 100,000 records with the ledger and
without it (the same code, its ledger writer replaced by one that does nothing), per
database, 1,000-record transactions as a backfill commits them. The HTTP reading and
record parsing a real load also does are left out (and with the parsing, the record's
hash, which the parser makes: ``RAW_DIGEST``), so the share printed is an upper bound of
the writer's share of a whole load (which ``make bench-ledger`` measures:
``scripts/bench_ledger_load.py``).

Beside the wall time, the CPU time it took: this process's (SQLite's work included) and
that of the database server's sessions of the bench's database (PostgreSQL's backends,
MariaDB's connection threads; read from /proc, so a local server only). On a shared host
the CPU times move far less from run to run than the wall time does.

    .venv/bin/python scripts/bench_ledger.py [--records N] [--databases sqlite postgresql mariadb]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchkit.measures import task_cpu

from etl.records.audit import Reject, parse_record
from etl.storage import batch, migrate
from etl.storage.engine import open_engine
from etl.storage.store import Store
from zendesk_sim import generate_records

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/",
}


def open_url(kind: str) -> str:
    """The server's administrative database, to create and drop the bench's own."""
    return SERVERS[kind] + ("postgres" if kind == "postgresql" else "")


class _NoLedger:
    def __init__(self, *args: Any) -> None: ...
    def rows(self, rows: Any) -> None: ...
    def rejects(self, rejects: Any) -> None: ...
    def finish(self) -> None: ...


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(open_url(kind), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield SERVERS[kind] + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
        admin.dispose()


# The server's sessions of the current database: PostgreSQL's backend processes, MariaDB's
# connection threads (Linux thread ids).
_SESSIONS = {
    "postgresql": "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
    "mysql": "SELECT tid FROM information_schema.processlist WHERE db = database()",
}


def _cpu_of(task: int) -> float:
    """User and system CPU seconds of a process or thread of this host (0 when gone)."""
    return task_cpu(task) or 0.0


def server_cpu(engine: sa.Engine) -> dict[int, float]:
    """CPU seconds of each of the server's sessions of the engine's database, by id."""
    sql = _SESSIONS.get("mysql" if engine.dialect.name == "mariadb" else engine.dialect.name)
    if sql is None:
        return {}
    with engine.connect() as conn:
        tasks = [int(task) for task in conn.exec_driver_sql(sql).scalars() if task]
    return {task: _cpu_of(task) for task in tasks}


def load(url: str, rows: list[dict[str, Any]], per_transaction: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process's and the server's sessions')."""
    engine = open_engine(url)
    migrate.upgrade(engine)
    store = Store(engine)
    run_id = store.start_run("bench", datetime.now(UTC), datetime.now(UTC), None)
    server = server_cpu(engine)
    started, cpu = time.perf_counter(), time.process_time()
    for at in range(0, len(rows), per_transaction):
        with store.transaction() as transaction:
            transaction.write_batch("bench", run_id, rows[at : at + per_transaction], [])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    cpu += sum(used - server.get(task, 0.0) for task, used in server_cpu(engine).items())
    engine.dispose()
    return elapsed, cpu


def timed(kind: str, rows: list[dict[str, Any]], ledger: bool) -> tuple[float, float]:
    real = vars(batch)["LedgerWriter"]
    if not ledger:
        vars(batch)["LedgerWriter"] = _NoLedger
    try:
        with database(kind) as url:
            return load(url, rows, 1000)
    finally:
        vars(batch)["LedgerWriter"] = real


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql", "mariadb"])
    args = parser.parse_args(argv)
    end = datetime.now(UTC) - timedelta(hours=1)
    source = generate_records(args.records, start=end - timedelta(days=30), end=end)
    now = datetime.now(UTC)
    parsed = (parse_record(raw, "bench", now) for raw in source)
    rows = [row for row in parsed if not isinstance(row, Reject)]
    print(
        f"{'database':<12}{'without':>12}{'with ledger':>14}{'cost':>8}"
        f"{'CPU without':>14}{'CPU with':>10}{'CPU cost':>10}"
    )
    for kind in args.databases:
        best = {True: float("inf"), False: float("inf")}
        cpu = {True: float("inf"), False: float("inf")}
        for _ in range(args.runs):  # alternate, best of each: the machine is shared
            for ledger in (False, True):
                wall, used = timed(kind, rows, ledger)
                best[ledger], cpu[ledger] = min(best[ledger], wall), min(cpu[ledger], used)
        off, on = len(rows) / best[False], len(rows) / best[True]
        print(
            f"{kind:<12}{off:>10,.0f}/s{on:>12,.0f}/s{(best[True] / best[False] - 1):>8.1%}"
            f"{cpu[False]:>13.2f}s{cpu[True]:>9.2f}s{(cpu[True] / cpu[False] - 1):>10.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
