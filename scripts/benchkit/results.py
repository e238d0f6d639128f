"""What the bench pieces share: their options, the figures they collect and the run.

``BenchRun`` holds the options, the cleanup stack, the databases and every figure;
``scripts/bench_load.py``, ``bench_startup.py`` and ``bench_reference.py`` fill it and
``scripts/benchkit/report.py`` prints and saves it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchkit.databases import Databases
from benchkit.support import Cleanup, Job, JobFailed, JobRun, Simulator, median

DEFAULT_POSTGRES = os.environ.get(
    "ETL_BENCH_POSTGRES",
    os.environ.get("ETL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
DEFAULT_MARIADB = os.environ.get(
    "ETL_BENCH_MARIADB",
    os.environ.get("ETL_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
)
LOCAL_RPM = 100_000  # the job's own budget in local runs: never the bottleneck
UNLIMITED = 10_000_000  # the simulator's limit in local runs (what its headers report)
PAGE = 100
SEED = 42
DAYS = 30.0
HISTORY_END = 3600.0  # generated history ends an hour ago: outside lag + overlap


@dataclass
class Scenario:
    """One line of the table: several runs of the same thing, and their medians."""

    name: str
    database: str
    records: int
    runs: list[JobRun] = field(default_factory=list)
    ceiling_rate: float | None = None  # records/s that would be 100 %
    ceiling_name: str = ""
    note: str = ""

    def med(self, key: str) -> float:
        return median([float(getattr(run, key)) for run in self.runs])

    @property
    def rate(self) -> float:
        return self.records / self.med("wall") if self.records else float("nan")

    @property
    def percent(self) -> float | None:
        return 100 * self.rate / self.ceiling_rate if self.ceiling_rate else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "database": self.database,
            "records": self.records,
            "runs": [run.as_dict() for run in self.runs],
            "median": {
                "wall_s": self.med("wall"),
                "records_per_s": self.rate if self.records else None,
                "peak_rss_mb": self.med("peak_rss_mb"),
                "early_rss_mb": self.med("early_rss_mb"),
                "cpu_s": self.med("cpu"),
                "requests": self.med("requests"),
                "rate_limited": self.med("rate_limited"),
                "sim_cpu_s": self.med("sim_cpu"),
                "other_cpu_s": self.med("other_cpu"),
            },
            "ceiling_records_per_s": self.ceiling_rate,
            "ceiling": self.ceiling_name or None,
            "percent_of_ceiling": self.percent,
            "note": self.note or None,
        }


@dataclass
class Ceiling:
    database: str
    records: int
    seconds: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.records / median(self.seconds)


@dataclass
class Target:
    text: str
    passed: bool


class BenchRun:
    """The options, the processes and databases to clean up, and every figure so far."""

    def __init__(self, args: argparse.Namespace, cleanup: Cleanup) -> None:
        self.args = args
        self.cleanup = cleanup
        self.kinds: list[str] = args.databases
        # The database hardly matters when every response takes 0.2 s.
        self.latency_db = "sqlite" if "sqlite" in self.kinds else self.kinds[0]
        self.dbs = Databases(cleanup, args.postgres, args.mariadb)
        self.scenarios: dict[tuple[str, str], Scenario] = {}
        self.ceilings: dict[str, Ceiling] = {}
        self.core_upserts: dict[str, Ceiling] = {}  # a reference, not a ceiling (no target)
        self.startup: dict[str, list[float]] = {}
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.0f}s] {text}", flush=True)

    def scenario(self, name: str, database: str, records: int) -> Scenario:
        key = (name, database)
        if key not in self.scenarios:
            self.scenarios[key] = Scenario(name, database, records)
        return self.scenarios[key]

    def simulator(self, records: int, **options: Any) -> Simulator:
        """The bench's history of ``records``; a huge limit unless ``options`` say otherwise."""
        options.setdefault("rate_limit", UNLIMITED)
        return Simulator(
            self.cleanup, records, seed=SEED, days=DAYS, end_offset=HISTORY_END, **options
        )

    def new_job(self, sim: Simulator, kind: str, rpm: int) -> tuple[Job, str]:
        url = self.dbs.create(kind)
        job = Job(self.cleanup, sim, url, self.dbs.root, rpm, settle=self.dbs.settle)
        job.migrate()
        return job, url

    def expect_rows(self, url: str, expected: int, what: str) -> None:
        stored = self.dbs.count_rows(url)
        if stored != expected:
            raise JobFailed(f"{what}: the table holds {stored} rows, expected {expected}")

    def record(self, scenario: Scenario, run: JobRun, label: str) -> None:
        scenario.runs.append(run)
        rate = f", {scenario.records / run.wall:,.0f} records/s" if scenario.records else ""
        self.say(
            f"  {label}: {run.wall:.2f} s{rate}, peak RSS {run.peak_rss_mb:.1f} MB, "
            f"{run.requests} requests, {run.rate_limited} 429s, job CPU {run.cpu:.1f} s, "
            f"simulator CPU {run.sim_cpu:.1f} s, rest of the machine {run.other_cpu:.1f} s"
        )


def short(records: int) -> str:
    """100k, 1M."""
    if records % 1_000_000 == 0:
        return f"{records // 1_000_000}M"
    return f"{records / 1000:,.0f}k"


def load_name(records: int) -> str:
    return f"initial load {short(records)}"


# -- command line ----------------------------------------------------------------------------


def parse_args(
    doc: str | None,
    prog: str,
    argv: Sequence[str] | None = None,
    kinds: Sequence[str] = ("sqlite", "postgresql"),
    *,
    runs: int | None = None,
    databases: Sequence[str] = ("sqlite", "postgresql"),
) -> argparse.Namespace:
    """Every piece takes the same options (each uses those of what it measures); ``kinds``:
    the databases the piece can measure; ``runs`` and ``databases`` a piece's own defaults
    (``runs``, when given, even with ``--quick``), which its ``--help`` shows."""
    stem = Path(prog).stem.replace("_", "-")  # each piece its own results file
    results = "bench-results.json" if stem == "bench" else f"{stem}-results.json"
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="smaller and faster (about 2-3 minutes): 1 run, 200k instead of 1M, 5,000 "
        "latency-bound records",
    )
    shown = f"default {runs}" if runs else "default 3; --quick: 1"
    add("--runs", type=int, help=f"runs per figure ({shown})")
    add(
        "--json",
        default=results,
        metavar="PATH",
        help=f"raw and median results with machine info (default: {results})",
    )
    add("--records", type=int, default=100_000, help="records of the local load (100,000)")
    add(
        "--large-records",
        type=int,
        help="records of the large load (1,000,000; --quick: 200,000; 0 skips it)",
    )
    add(
        "--large-runs",
        type=int,
        help="runs of the large load (default 2, a 1M PostgreSQL load takes minutes; --quick: 1)",
    )
    add(
        "--latency-records",
        type=int,
        help="records of the latency-bound load (50,000: 500 requests, about 43 s at the "
        "ceiling, in which a run's fixed costs of about 1 s weigh 2%%; --quick: 5,000; "
        "0 skips it)",
    )
    add("--latency-runs", type=int, default=1, help="runs of the latency-bound load (1)")
    add(
        "--databases",
        default=",".join(databases),
        help=f"comma-separated: {', '.join(kinds)} (default {','.join(databases)})",
    )
    add(
        "--postgres",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help="PostgreSQL server (SQLAlchemy URL of an existing database; default "
        "$ETL_BENCH_POSTGRES, $ETL_TEST_POSTGRES or postgres@127.0.0.1:5432/test)",
    )
    add(
        "--mariadb",
        default=DEFAULT_MARIADB,
        metavar="URL",
        help="MariaDB server, for --databases mariadb (SQLAlchemy URL of an existing database; "
        "default $ETL_BENCH_MARIADB, $ETL_TEST_MYSQL or root@127.0.0.1:3306/test)",
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or runs or (1 if args.quick else 3)
    if args.large_records is None:
        args.large_records = 200_000 if args.quick else 1_000_000
    args.large_runs = args.large_runs or (1 if args.quick else min(args.runs, 2))
    if args.latency_records is None:
        args.latency_records = 5_000 if args.quick else 50_000
    chosen = [k.strip() for k in args.databases.split(",") if k.strip()]
    unknown = set(chosen) - set(kinds)
    if unknown or not chosen:
        parser.error(f"--databases: unknown kind(s) {', '.join(sorted(unknown)) or '(none)'}")
    args.databases = chosen
    if min(args.runs, args.large_runs, args.latency_runs, args.records) < 1:
        parser.error("--runs, --large-runs, --latency-runs and --records must be at least 1")
    return args
