"""The references of a load: the bare batched upsert (the ceiling) and SQLAlchemy Core's.

The simulator's records are fetched once, untimed (``benchkit.ceiling.fetch_rows``); each
upsert then takes them into a fresh database from a quiet server, ``--runs`` times per
database. The bare upsert is the 100 % of the load's "% of ceiling"; the Core upsert is
reported for reference, with no target.

    .venv/bin/python scripts/bench_reference.py [--records N] [--runs N] [--databases ...]
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchkit.ceiling import core_upsert, fetch_rows, postgres_ceiling, sqlite_ceiling
from benchkit.report import run_bench
from benchkit.results import BenchRun, Ceiling, parse_args

Upsert = Callable[[str, Sequence[dict[str, Any]]], float]
CEILINGS: dict[str, Upsert] = {"sqlite": sqlite_ceiling, "postgresql": postgres_ceiling}


def fetch_load_rows(bench: BenchRun) -> list[dict[str, Any]]:
    """The rows of the local load, as the job would store them (not timed)."""
    n = bench.args.records
    bench.say(f"fetching the {n:,} records once for the raw ceilings")
    fetcher = bench.simulator(n)
    rows = fetch_rows(fetcher.url)
    fetcher.stop()
    if len(rows) != n:
        raise RuntimeError(f"fetched {len(rows)} records from the simulator, not {n}")
    return rows


def timed_upsert(
    bench: BenchRun, kind: str, upsert: Upsert, rows: Sequence[dict[str, Any]]
) -> float:
    """Seconds ``upsert`` takes for ``rows`` into a fresh database, from a quiet server."""
    url = bench.dbs.create(kind)
    bench.dbs.settle()
    try:
        return upsert(url, rows)
    finally:
        bench.dbs.drop(url)


def measure_upserts(bench: BenchRun, kind: str, rows: Sequence[dict[str, Any]], label: str) -> None:
    """One run of each reference upsert of ``rows`` into ``kind``."""
    n = len(rows)
    seconds = timed_upsert(bench, kind, CEILINGS[kind], rows)
    bench.ceilings.setdefault(kind, Ceiling(kind, n)).seconds.append(seconds)
    bench.say(f"  bare upsert ceiling, {label}: {seconds:.2f} s, {n / seconds:,.0f} records/s")
    seconds = timed_upsert(bench, kind, core_upsert, rows)
    bench.core_upserts.setdefault(kind, Ceiling(kind, n)).seconds.append(seconds)
    bench.say(f"  SQLAlchemy Core upsert, {label}: {seconds:.2f} s, {n / seconds:,.0f} records/s")


def run(bench: BenchRun) -> None:
    rows = fetch_load_rows(bench)
    for number in range(1, bench.args.runs + 1):
        for kind in bench.kinds:
            measure_upserts(bench, kind, rows, f"run {number}/{bench.args.runs} {kind}")


if __name__ == "__main__":
    sys.exit(run_bench(parse_args(__doc__, "scripts/bench_reference.py"), run, lambda _: []))
