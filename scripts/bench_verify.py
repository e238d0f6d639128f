"""``verify`` of a large store: records/s, CPU and peak memory.

Stores ``--records`` (1,000,000) records through the store's own write path (rows and
their ledger, as a sync would), then runs ``zendesk-audit-etl verify`` on them as a
process of its own: wall time, records verified a second (the target: 200,000), the CPU
seconds of verify's processes (and of the busiest of them: the wall time on free cores)
and of the server's sessions (on MariaDB, with the InnoDB buffer pool's size beside the
table's), and the peak RSS of verify's process plus its workers'
(``--jobs``), against a verify of a quarter of them (memory is
flat when the two peaks are within 15%). With ``--runs N`` the full store is verified N
times: the median time and CPU, the highest peak (the machine is shared: one run says
little). ``--jobs 1 2`` verifies with each, in turn within each run; ``--base DIR`` also
with another checkout's code (its .venv), for an A/B in the same conditions. ``--url URL``
verifies a store built already (by an earlier load: building 1,000,000 rows takes
minutes) as it is, without the quarter's memory reference. ``--analyze`` gathers the
planner's statistics of the store first (``ANALYZE``, as autovacuum does on a user's
PostgreSQL server): a fresh store has none, and the plans differ with them.

    .venv/bin/python scripts/bench_verify.py [--records N] [--runs N] [--jobs N ...]
        [--base DIR] [--databases sqlite postgresql mariadb] [--url URL] [--analyze]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from bench_ledger import database, load, server_cpu
from benchkit.hostspeed import describe, reference_cpu
from benchkit.measures import task_cpu
from sqlalchemy.engine import Engine

from etl.records.audit import Reject, parse_record
from etl.storage.engine import open_engine
from zendesk_sim import generate_records

TARGET = 200_000  # records/s
ROOT = Path(__file__).resolve().parent.parent


# The verify process reports its own peak (VmHWM, reset by exec): ru_maxrss of a child
# would count the bench's own memory, which the fork copied before the exec. Its workers'
# (spawned, so their own peaks) as the largest one's, times their number: at most that.
_LAUNCH = (
    "import sys, resource; from etl.cli.main import main; code = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
    "me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)); "
    "sys.stderr.write(f'{hwm} {kids.ru_maxrss} {me.ru_utime + me.ru_stime}'); sys.exit(code)"
)


@dataclass(frozen=True)
class Variant:
    """Which code verifies (a checkout) and with which ``--jobs`` (None: its default)."""

    name: str
    root: Path
    jobs: int | None


@dataclass(frozen=True)
class Run:
    seconds: float
    records: int
    peak: int  # KiB: the verify process and its workers together
    cpu: float  # seconds: the verify process and its workers
    busiest: float  # seconds: the verify process's or a worker's, the larger (see _report)
    server: float  # seconds: the server's sessions of the bench's database


def verify(url: str, folder: Path, variant: Variant) -> Run:
    """One ``verify`` of the store at ``url`` by ``variant``."""
    config = folder / "config.toml"
    config.write_text(f'[zendesk]\nsubdomain = "bench"\n[database]\nurl = "{url}"\n')
    python = variant.root / ".venv" / "bin" / "python"
    jobs = [] if variant.jobs is None else ["--jobs", str(variant.jobs)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with sessions_cpu(url) as server:
        started = time.perf_counter()
        result = subprocess.run(
            [str(python), "-c", _LAUNCH, "--config", str(config), "verify", "--json", *jobs],
            capture_output=True, text=True, cwd=variant.root,
            env={**os.environ, "ZENDESK_OAUTH_TOKEN": "x"},
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if result.returncode != 0:
        raise SystemExit(f"verify failed ({result.returncode}): {result.stderr or result.stdout}")
    records = sum(a["records_verified"] for a in json.loads(result.stdout)["accounts"])
    own, worker, mine = result.stderr.strip().splitlines()[-1].split()
    workers = (variant.jobs or os.cpu_count() or 1) - 1 if int(worker) else 0
    # the workers' CPU shared evenly among them: their spans are of one size
    busiest = max(float(mine), (cpu - float(mine)) / workers) if workers else cpu
    return Run(elapsed, records, int(own) + int(worker) * workers, cpu, busiest, sum(server))


@contextmanager
def sessions_cpu(url: str) -> Iterator[list[float]]:
    """Within it, the server's sessions of the database sampled every quarter second; the
    CPU seconds they used meanwhile.

    MariaDB serves a connection on a cached thread that may have served others before (the
    load's, other sessions' tests): each thread's CPU is counted from what it had when this
    began (every thread of the server's process read then), not from zero, and up to what it
    has at the end (a session's thread idles in the cache once it ends: its last quarter is
    kept). PostgreSQL's sessions are processes of their own, gone at their end (their last
    quarter may be lost)."""
    engine = open_engine(url)
    if engine.dialect.name == "sqlite":
        engine.dispose()
        yield []
        return
    baseline = {**_server_threads(engine), **server_cpu(engine)}
    seen: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.25):
            seen.update(server_cpu(engine))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    used: list[float] = []
    try:
        yield used
    finally:
        stop.set()
        thread.join()
        seen.update(server_cpu(engine))
        for task in seen:  # a cached thread, idle since its session ended: its CPU now
            seen[task] = max(seen[task], task_cpu(task) or 0.0)
        engine.dispose()
        used.append(sum(cpu - baseline.get(task, 0.0) for task, cpu in seen.items()))


def _server_threads(engine: Engine) -> dict[int, float]:
    """CPU seconds of every thread of MariaDB's server process, by Linux thread id (none
    on PostgreSQL, whose sessions are processes: none is reused)."""
    if engine.dialect.name not in ("mysql", "mariadb"):  # MariaDB's is "mysql" too
        return {}
    with engine.connect() as conn:
        own = conn.exec_driver_sql(
            "SELECT tid FROM information_schema.processlist WHERE id = connection_id()"
        ).scalar()
    try:
        group = next(
            line.split()[1]
            for line in Path(f"/proc/{own}/status").read_text().splitlines()
            if line.startswith("Tgid:")
        )
        tasks = [int(name) for name in os.listdir(f"/proc/{group}/task")]
    except (OSError, StopIteration):  # not a local server
        return {}
    return {task: cpu for task in tasks if (cpu := task_cpu(task)) is not None}


def buffer_pool(url: str) -> str:
    """MariaDB's/MySQL's InnoDB buffer pool and the audit table's size, as a line of the
    report ("" on the other databases): ``verify`` reads every row through the pool, and
    one too small for the table costs the server about twice its CPU (docs/INTEGRITY.md)."""
    engine = open_engine(url)
    try:
        if engine.dialect.name not in ("mysql", "mariadb"):
            return ""
        with engine.connect() as conn:
            pool = conn.exec_driver_sql("SELECT @@innodb_buffer_pool_size").scalar()
            table = conn.exec_driver_sql(
                "SELECT data_length + index_length FROM information_schema.tables"
                " WHERE table_schema = DATABASE() AND table_name = 'zendesk_audit_logs'"
            ).scalar()
    finally:
        engine.dispose()
    pool_mb, table_mb = int(pool or 0) // 2**20, int(table or 0) // 2**20
    return f"innodb_buffer_pool_size {pool_mb} MB, the audit table {table_mb} MB"


def analyze(url: str) -> None:
    """The planner's statistics of every table of the store at ``url``."""
    engine = open_engine(url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name in ("mysql", "mariadb"):
            tables = ", ".join(sa.inspect(conn).get_table_names())
            conn.exec_driver_sql(f"ANALYZE TABLE {tables}").fetchall()
        else:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="verifies of the full store")
    parser.add_argument("--databases", nargs="+", default=["sqlite"])
    parser.add_argument("--jobs", nargs="+", type=int, help="verify --jobs values, each in turn")
    parser.add_argument("--base", type=Path, help="a checkout whose verify runs too (A/B)")
    parser.add_argument("--url", help="a database holding a store already: verified as it is")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE the store first")
    args = parser.parse_args(argv)
    variants = [Variant(f"jobs {j}", ROOT, j) for j in args.jobs] if args.jobs else []
    variants = variants or [Variant("default", ROOT, None)]
    if args.base:
        variants.insert(0, Variant("base", args.base.resolve(), None))
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(describe(reference_cpu()))
    if args.url:
        if args.analyze:
            analyze(args.url)
        return _stored(args.url, variants, args.runs)
    end = datetime.now(UTC) - timedelta(hours=1)
    now = datetime.now(UTC)
    source = generate_records(args.records, start=end - timedelta(days=365), end=end)
    parsed = (parse_record(raw, "bench", now) for raw in source)
    rows = [row for row in parsed if not isinstance(row, Reject)]
    print(
        f"{'database':<12}{'verify':<9}{'records':>10}{'seconds':>9}{'records/s':>12}"
        f"{'CPU s':>7}{'busiest':>8}{'server s':>9}{'peak RSS':>10}  target"
    )
    ok = True
    for kind in args.databases:
        for share in (4, 1):  # a quarter first: its peak is the flat-memory reference
            part = rows[: len(rows) // share]
            found: dict[str, list[Run]] = {variant.name: [] for variant in variants}
            with database(kind) as url, tempfile.TemporaryDirectory() as folder:
                load(url, part, 5000)
                if share == 1 and (pool := buffer_pool(url)):
                    print(f"{kind}: {pool}")
                if args.analyze:
                    analyze(url)
                for _ in range(args.runs if share == 1 else 1):
                    for variant in variants:  # interleaved: each run's conditions alike
                        found[variant.name].append(verify(url, Path(folder), variant))
            for variant in variants:
                ok = _report(kind, variant, found[variant.name], share) and ok
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0 if ok else 1


def _stored(url: str, variants: list[Variant], runs: int) -> int:
    """Verify the store at ``url`` ``runs`` times with each variant, interleaved."""
    found: dict[str, list[Run]] = {variant.name: [] for variant in variants}
    if pool := buffer_pool(url):
        print(pool)
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(runs):
            for variant in variants:
                found[variant.name].append(verify(url, Path(folder), variant))
                run = found[variant.name][-1]
                took = f"{run.seconds:.1f} s, CPU {run.cpu:.1f} s, server {run.server:.1f} s"
                print(f"  {variant.name}: {took}, load {os.getloadavg()[0]:.1f}")
    kind = open_engine(url).dialect.name
    ok = all([_report(kind, variant, found[variant.name], 1) for variant in variants])
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0 if ok else 1


def _report(kind: str, variant: Variant, runs: list[Run], share: int) -> bool:
    seconds = statistics.median(run.seconds for run in runs)
    cpu = statistics.median(run.cpu for run in runs)
    busiest = statistics.median(run.busiest for run in runs)
    server = statistics.median(run.server for run in runs)
    records, peak = runs[0].records, max(run.peak for run in runs)
    rate = records / seconds
    met = rate >= TARGET if share == 1 else True
    verdict = ("met" if met else "MISSED") if share == 1 else ""
    print(
        f"{kind:<12}{variant.name:<9}{records:>10,}{seconds:>9.1f}{rate:>12,.0f}{cpu:>7.1f}"
        f"{busiest:>8.1f}{server:>9.1f}{peak / 1024:>8.0f} MB  {verdict}"
    )
    return met


if __name__ == "__main__":
    sys.exit(main())
