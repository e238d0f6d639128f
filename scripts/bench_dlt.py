"""`make bench-dlt`: the job's first load against dlt's, on the same API in the same run.

One simulator (``--records``, 100,000, with a limit so high that it never sets the pace)
serves both. Per run and database, in alternating order: the job's first load (the real
``sync``, whole process, default settings apart from the simulator's address and a
request budget that is never the bottleneck) into a fresh database, and a dlt pipeline
(``scripts/benchkit/dlt_pipeline.py``: the ``rest_api`` source following ``links.next``
over cursor pages of 100, merge on ``id``) into another fresh database: SQLite through
dlt's ``sqlalchemy`` destination, PostgreSQL through its ``postgres`` destination. Both
are timed as whole processes with their own peak RSS; the table shows medians of
``--runs`` and the job's speed as a multiple of dlt's (target: 3.5x or more).

dlt is not a dependency of the job: ``make bench-dlt`` installs the ``bench`` extra
(``.venv/bin/pip install -e '.[bench]'``), at the version measured (``DLT_VERSION``).

    .venv/bin/python scripts/bench_dlt.py [--records N] [--runs N] [--databases ...]
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa
from benchkit.report import run_bench
from benchkit.results import LOCAL_RPM, BenchRun, Target, load_name, parse_args, short
from benchkit.support import (
    OAUTH_TOKEN,
    PYTHON,
    ROOT,
    JobFailed,
    Simulator,
    compile_package,
    measure_process,
)
from sqlalchemy.engine import make_url

DLT_VERSION = "1.31.0"  # the version measured; pyproject.toml's bench extra pins it
TARGET = 3.5  # the job's records/s as a multiple of dlt's (issue 27)
INSTALL = ".venv/bin/pip install -e '.[bench]'  (or: make bench-dlt)"
PIPELINE = ROOT / "scripts" / "benchkit" / "dlt_pipeline.py"
DATASET = "zendesk"  # benchkit.dlt_pipeline.DATASET: the schema (PostgreSQL) or file suffix


def dlt_name(records: int) -> str:
    return f"dlt first load {short(records)}"


def dlt_installed() -> str | None:
    """dlt's version, or None when it is not installed."""
    if importlib.util.find_spec("dlt") is None:
        return None
    return importlib.metadata.version("dlt")


def dlt_credentials(url: str, kind: str) -> str:
    """The bench's database URL as dlt takes it: SQLite as it is; PostgreSQL with a password
    (dlt insists on one, and a server that trusts the client ignores it) and psycopg2."""
    if kind == "sqlite":
        return url
    parsed = make_url(url)
    return parsed.set(
        drivername="postgresql", password=parsed.password or "unused"
    ).render_as_string(hide_password=False)


def dlt_rows(url: str, kind: str) -> int:
    """Rows dlt merged into its ``audit_logs`` table."""
    if kind == "sqlite":
        # dlt's sqlalchemy destination attaches the dataset as a file beside the database
        path = Path(make_url(url).database or "")
        with sqlite3.connect(path.with_name(f"{path.stem}__{DATASET}.db")) as conn:
            return int(conn.execute("SELECT count(*) FROM audit_logs").fetchone()[0])
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.text(f"SELECT count(*) FROM {DATASET}.audit_logs")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def ours(bench: BenchRun, sim: Simulator, kind: str, label: str) -> None:
    n = bench.args.records
    job, url = bench.new_job(sim, kind, LOCAL_RPM)
    bench.record(bench.scenario(load_name(n), kind, n), job.sync(), f"job, {label}")
    bench.expect_rows(url, n, "after the job's first load")
    bench.dbs.drop(url)


def theirs(bench: BenchRun, sim: Simulator, kind: str, label: str) -> None:
    """dlt's first load of everything ``sim`` holds into a fresh database."""
    n = sim.records
    url = bench.dbs.create(kind)
    pipelines = tempfile.mkdtemp(prefix="dlt-", dir=bench.dbs.root)  # dlt's local state
    command = [PYTHON, str(PIPELINE), sim.url, OAUTH_TOKEN, kind, dlt_credentials(url, kind)]
    bench.dbs.settle()
    # The job's environment (its token aside); a HOME of its own: no ~/.dlt of the user's
    env = {**os.environ, "HOME": pipelines, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    run = measure_process(bench.cleanup, sim, [*command, pipelines], env, bench.dbs.root, "dlt")
    bench.record(bench.scenario(dlt_name(n), kind, n), run, f"dlt, {label}")
    stored = dlt_rows(url, kind)
    if stored != n:
        raise JobFailed(f"after dlt's first load: {stored} rows, expected {n}")
    bench.dbs.drop(url)


def compare(bench: BenchRun, sim: Simulator, number: int) -> None:
    """One run on each database, the job first on odd runs and dlt first on even ones."""
    for kind in bench.kinds:
        label = f"run {number}/{bench.args.runs} {kind}"
        pair = [ours, theirs] if number % 2 else [theirs, ours]
        for load in pair:
            load(bench, sim, kind, label)


def link(bench: BenchRun) -> None:
    """Each of the job's loads notes its multiple of dlt's speed."""
    version = dlt_installed() or "?"
    for kind in bench.kinds:
        job = bench.scenarios.get((load_name(bench.args.records), kind))
        dlt = bench.scenarios.get((dlt_name(bench.args.records), kind))
        if job is None or dlt is None:
            continue
        dlt.note = f"dlt {version}, rest_api, merge on id"
        # CPU too: on a busy host the job's threads get no second core, and wall time
        # then tells less of what each costs
        cpu = dlt.med("cpu") / job.med("cpu")
        ratio = f"{job.rate / dlt.rate:.2f}x dlt's speed, {cpu:.2f}x less CPU"
        job.note = (job.note + "; " if job.note else "") + ratio


def targets(bench: BenchRun, kind: str) -> list[Target]:
    n = bench.args.records
    job = bench.scenarios.get((load_name(n), kind))
    dlt = bench.scenarios.get((dlt_name(n), kind))
    if job is None or dlt is None:
        return []
    ratio = job.rate / dlt.rate
    return [
        Target(
            f"first load {short(n)} {kind} >= {TARGET}x dlt's: {ratio:.2f}x "
            f"({job.rate:,.0f} vs {dlt.rate:,.0f} records/s; CPU {job.med('cpu'):.1f} vs "
            f"{dlt.med('cpu'):.1f} s; peak RSS {job.med('peak_rss_mb'):.0f} vs "
            f"{dlt.med('peak_rss_mb'):.0f} MB)",
            ratio >= TARGET,
        )
    ]


def run(bench: BenchRun) -> None:
    version = dlt_installed()
    bench.say(f"dlt {version} (measured: {DLT_VERSION})")
    compile_package()  # as installed: no run compiles the job's modules (dlt's are compiled)
    sim = bench.simulator(bench.args.records)
    for number in range(1, bench.args.runs + 1):
        compare(bench, sim, number)
    sim.stop()
    link(bench)


def all_targets(bench: BenchRun) -> list[Target]:
    return [target for kind in bench.kinds for target in targets(bench, kind)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__, "scripts/bench_dlt.py", argv)
    if dlt_installed() is None:
        print(f"bench_dlt: dlt is not installed; install it with {INSTALL}", file=sys.stderr)
        return 2
    return run_bench(args, run, all_targets)


if __name__ == "__main__":
    sys.exit(main())
