"""What the ledger costs a load: the store's writes of 100,000 records with the ledger and
without it (the same code, its ledger writer replaced by one that does nothing), per
database, 1,000-record transactions as a backfill commits them. The HTTP reading and
record parsing a real load also does are left out, so the share printed is an upper
bound of the ledger's share of a whole load.

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


def load(url: str, rows: list[dict[str, Any]], per_transaction: int) -> float:
    engine = open_engine(url)
    migrate.upgrade(engine)
    store = Store(engine)
    run_id = store.start_run("bench", datetime.now(UTC), datetime.now(UTC), None)
    started = time.perf_counter()
    for at in range(0, len(rows), per_transaction):
        with store.transaction() as transaction:
            transaction.write_batch("bench", run_id, rows[at : at + per_transaction], [])
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed


def timed(kind: str, rows: list[dict[str, Any]], ledger: bool) -> float:
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
    print(f"{'database':<12}{'without':>12}{'with ledger':>14}{'cost':>8}")
    for kind in args.databases:
        best = {True: float("inf"), False: float("inf")}
        for _ in range(args.runs):  # alternate, best of each: the machine is shared
            for ledger in (False, True):
                best[ledger] = min(best[ledger], timed(kind, rows, ledger))
        off, on = len(rows) / best[False], len(rows) / best[True]
        print(f"{kind:<12}{off:>10,.0f}/s{on:>12,.0f}/s{(best[True] / best[False] - 1):>8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
