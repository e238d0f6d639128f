"""`make bench`: throughput, memory and request cost of the real job, against the simulator.

The simulated Zendesk always runs as its own process and the job as the real command
line (``python -m etl --config CFG --quiet sync``) in another, timed whole (start-up
included) with its own peak RSS. Every run gets a fresh database (a SQLite file in a
temporary directory, or a uniquely named PostgreSQL database); ``migrate`` runs first,
untimed. Each figure is the median of ``--runs`` runs.

Scenarios:

1. initial load of 100,000 records, no latency, into SQLite and PostgreSQL, against
   the raw ceiling of each database (a bare batched upsert of the same rows), and, for
   reference only, the same rows upserted through SQLAlchemy Core;
2. the same load at 1,000,000 records: throughput and peak RSS against the 100k run;
3. latency-bound: 0.2 s per response and a 700/min limit, against 700 x 100 records/min;
4. incremental: after each 100k load, a run with nothing new, 1,000 new records, and
   nothing new again (with those 1,000 still inside the overlap window); plus the
   interpreter and import start-up that every run pays;
5. when dlt is installed (the ``bench`` extra), after each 100k load dlt's first load of
   the same records from the same simulator, and the job's speed as a multiple of it.

The simulator is started with a huge ``--rate-limit`` for the local scenarios: it then
reports that limit in ``X-Rate-Limit`` (with no limit it reports Zendesk's 700, and the
job correctly slows down when ``X-Rate-Limit-Remaining`` runs low), so only the job and
the database set the pace. Failed targets are reported, not fatal; a failing job is.

Each piece measures one thing and runs alone too, with the same options:
``scripts/bench_load.py`` (1-3: loads, memory, latency-bound), ``bench_startup.py`` (4:
start-up, nothing new, 1,000 new), ``bench_reference.py`` (1: the bare and Core upserts),
``bench_dlt.py`` (5, with the order of the two loads alternating);
this driver interleaves them as below, and prints one table and one JSON file.

    .venv/bin/python scripts/bench.py [--quick] [--runs N] [--json PATH]
"""

from __future__ import annotations

import sys

import bench_dlt
import bench_load
import bench_reference
import bench_startup
from benchkit.report import run_bench
from benchkit.results import BenchRun, Target, parse_args


def run(bench: BenchRun) -> None:
    bench_startup.measure_startup(bench)
    # 1, 4 and 5: per run and database, the references, the load, dlt's, the increments
    rows = bench_reference.fetch_load_rows(bench)
    dlt = bench_dlt.dlt_installed() is not None
    if not dlt:
        bench.say(f"dlt is not installed: no comparison with it ({bench_dlt.INSTALL})")
    for number in range(1, bench.args.runs + 1):
        for kind in bench.kinds:
            label = f"run {number}/{bench.args.runs} {kind}"
            bench_reference.measure_upserts(bench, kind, rows, label)
            sim, job, url = bench_load.initial_load(bench, kind, label)
            if dlt:  # before the increments add records
                bench_dlt.theirs(bench, sim, kind, label)
            bench_startup.increments(bench, sim, job, url, kind, number, label)
            sim.stop()
            bench.dbs.drop(url)
    del rows
    bench_load.latency_bound(bench)  # 3
    bench_load.large_load(bench)  # 2
    bench_load.link_ceilings(bench)
    bench_dlt.link(bench)


def targets(bench: BenchRun) -> list[Target]:
    found = bench_load.latency_targets(bench)
    for kind in bench.kinds:
        found += bench_load.targets(bench, kind) + bench_startup.targets(bench, kind)
        found += bench_dlt.targets(bench, kind)
    return found


def main(argv: list[str] | None = None) -> int:
    return run_bench(parse_args(__doc__, "scripts/bench.py", argv), run, targets)


if __name__ == "__main__":
    sys.exit(main())
