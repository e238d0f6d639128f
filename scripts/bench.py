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
   interpreter and import start-up that every run pays.

The simulator is started with a huge ``--rate-limit`` for the local scenarios: it then
reports that limit in ``X-Rate-Limit`` (with no limit it reports Zendesk's 700, and the
job correctly slows down when ``X-Rate-Limit-Remaining`` runs low), so only the job and
the database set the pace. Failed targets are reported, not fatal; a failing job is.

    .venv/bin/python scripts/bench.py [--quick] [--runs N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from bench_ceiling import core_upsert, fetch_rows, postgres_ceiling, sqlite_ceiling
from bench_support import (
    PYTHON,
    ROOT,
    Cleanup,
    Databases,
    Job,
    JobFailed,
    JobRun,
    Simulator,
    median,
    time_command,
)

DEFAULT_POSTGRES = os.environ.get(
    "ETL_BENCH_POSTGRES",
    os.environ.get("ETL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
LOCAL_RPM = 100_000  # the job's own budget in local runs: never the bottleneck
UNLIMITED = 10_000_000  # the simulator's limit in local runs (what its headers report)
LATENCY = 0.2
LATENCY_RPM = 700
PAGE = 100
LATENCY_CEILING = LATENCY_RPM * PAGE / 60  # records/s
NEW_RECORDS = 1000
NEW_ID_BASE = 9_500_000_000_000
SEED = 42
DAYS = 30.0
HISTORY_END = 3600.0  # generated history ends an hour ago: outside lag + overlap
LOAD_AT_START = os.getloadavg()[0]
LEGEND = """
records/s = records / wall time of the whole sync process (start-up and imports included);
% of ceiling: of the bare batched upsert of the same rows (loads), or of 700 requests/min x
100 records (latency-bound); peak RSS = the sync process's own VmHWM; requests and 429s as
counted by the simulator; job CPU = user + system seconds of the sync process; sim CPU =
the simulator's; rest CPU = the rest of the machine's meanwhile (on PostgreSQL, mostly its
server). On N cores no run can take less than (job + sim + rest CPU) / N."""


# -- results -----------------------------------------------------------------------------


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


# -- the benchmark -----------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, cleanup: Cleanup) -> None:
        self.args = args
        self.cleanup = cleanup
        self.kinds: list[str] = args.databases
        # The database hardly matters when every response takes 0.2 s.
        self.latency_db = "sqlite" if "sqlite" in self.kinds else self.kinds[0]
        self.dbs = Databases(cleanup, args.postgres)
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

    # -- 0: start-up -------------------------------------------------------------------

    def measure_startup(self) -> None:
        runs = max(3, self.args.runs)
        self.say(f"start-up: interpreter, --version and the sync imports ({runs} runs each)")
        commands = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "python -m etl --version": [PYTHON, "-m", "etl", "--version"],
            "import etl.cli, etl.job": [PYTHON, "-c", "import etl.cli, etl.job"],
        }
        if "postgresql" in self.kinds:
            commands["import etl.cli, etl.job, psycopg"] = [
                PYTHON,
                "-c",
                "import etl.cli, etl.job, psycopg",
            ]
        for name, command in commands.items():
            self.startup[name] = time_command(command, runs)

    # -- 1 and 4: the 100k load, its ceiling, then incremental runs ----------------------

    def local_load(self) -> None:
        n = self.args.records
        self.say(f"fetching the {n:,} records once for the raw ceilings")
        fetcher = Simulator(
            self.cleanup, n, seed=SEED, days=DAYS, end_offset=HISTORY_END, rate_limit=UNLIMITED
        )
        rows = fetch_rows(fetcher.url)
        fetcher.stop()
        if len(rows) != n:
            raise RuntimeError(f"fetched {len(rows)} records from the simulator, not {n}")
        ceilings: dict[str, Callable[[str, Sequence[dict[str, Any]]], float]] = {
            "sqlite": sqlite_ceiling,
            "postgresql": postgres_ceiling,
        }
        for run in range(1, self.args.runs + 1):
            for kind in self.kinds:
                label = f"run {run}/{self.args.runs} {kind}"
                seconds = self.timed_upsert(kind, ceilings[kind], rows)
                ceiling = self.ceilings.setdefault(kind, Ceiling(kind, n))
                ceiling.seconds.append(seconds)
                self.say(
                    f"  bare upsert ceiling, {label}: {seconds:.2f} s, {n / seconds:,.0f} records/s"
                )
                seconds = self.timed_upsert(kind, core_upsert, rows)
                self.core_upserts.setdefault(kind, Ceiling(kind, n)).seconds.append(seconds)
                self.say(
                    f"  SQLAlchemy Core upsert, {label}: {seconds:.2f} s, "
                    f"{n / seconds:,.0f} records/s"
                )
                self.load_and_increments(kind, run, label)
        del rows

    def timed_upsert(
        self,
        kind: str,
        upsert: Callable[[str, Sequence[dict[str, Any]]], float],
        rows: Sequence[dict[str, Any]],
    ) -> float:
        """Seconds ``upsert`` takes for ``rows`` into a fresh database, from a quiet server."""
        url = self.dbs.create(kind)
        self.dbs.settle()
        try:
            return upsert(url, rows)
        finally:
            self.dbs.drop(url)

    def load_and_increments(self, kind: str, run: int, label: str) -> None:
        n = self.args.records
        # A simulator per run: the records added below must not leak into the next load.
        sim = Simulator(
            self.cleanup, n, seed=SEED, days=DAYS, end_offset=HISTORY_END, rate_limit=UNLIMITED
        )
        job, url = self.new_job(sim, kind, LOCAL_RPM)
        load = self.scenario(load_name(n), kind, n)
        self.record(load, job.sync(), f"initial load, {label}")
        self.expect_rows(url, n, "after the initial load")

        idle = self.scenario("nothing new", kind, 0)
        self.record(idle, job.sync(), f"nothing new, {label}")
        sim.add_records(new_records(sim.url, run))
        new = self.scenario(f"+{NEW_RECORDS:,} new", kind, NEW_RECORDS)
        self.record(new, job.sync(), f"{NEW_RECORDS:,} new, {label}")
        self.expect_rows(url, n + NEW_RECORDS, f"after adding {NEW_RECORDS} records")
        again = self.scenario(f"nothing new, {NEW_RECORDS:,} in overlap", kind, 0)
        self.record(again, job.sync(), f"nothing new with {NEW_RECORDS:,} in the overlap, {label}")
        sim.stop()
        self.dbs.drop(url)

    # -- 2: the large load -----------------------------------------------------------------

    def large_load(self) -> None:
        n = self.args.large_records
        if n <= 0:
            return
        sim = Simulator(
            self.cleanup, n, seed=SEED, days=DAYS, end_offset=HISTORY_END, rate_limit=UNLIMITED
        )
        for run in range(1, self.args.large_runs + 1):
            for kind in self.kinds:
                job, url = self.new_job(sim, kind, LOCAL_RPM)
                scenario = self.scenario(load_name(n), kind, n)
                self.record(
                    scenario,
                    job.sync(),
                    f"initial load {n:,}, run {run}/{self.args.large_runs} {kind}",
                )
                self.expect_rows(url, n, "after the large load")
                self.dbs.drop(url)
        sim.stop()

    # -- 3: latency-bound --------------------------------------------------------------------

    def latency_bound(self) -> None:
        n = self.args.latency_records
        if n <= 0:
            return
        sim = Simulator(
            self.cleanup,
            n,
            seed=SEED,
            days=DAYS,
            end_offset=HISTORY_END,
            rate_limit=LATENCY_RPM,
            latency=LATENCY,
        )
        scenario = self.scenario("latency-bound", self.latency_db, n)
        scenario.ceiling_rate = LATENCY_CEILING
        scenario.ceiling_name = f"{LATENCY_RPM} requests/min x {PAGE} records"
        for run in range(1, self.args.latency_runs + 1):
            job, url = self.new_job(sim, self.latency_db, LATENCY_RPM)
            self.record(scenario, job.sync(), f"latency-bound, run {run}/{self.args.latency_runs}")
            self.expect_rows(url, n, "after the latency-bound load")
            self.dbs.drop(url)
        sim.stop()

    def run(self) -> None:
        self.measure_startup()
        self.local_load()
        self.latency_bound()
        self.large_load()
        self.link_ceilings()

    def link_ceilings(self) -> None:
        small, large = load_name(self.args.records), load_name(self.args.large_records)
        for kind, ceiling in self.ceilings.items():
            load = self.scenarios.get((small, kind))
            if load is not None:
                load.ceiling_rate = ceiling.rate
                load.ceiling_name = "bare batched upsert"
            big = self.scenarios.get((large, kind))
            if big is not None and load is not None and big is not load:
                ratio = big.med("peak_rss_mb") / load.med("peak_rss_mb")
                big.note = f"RSS x{ratio:.2f} vs {short(self.args.records)}"
        latency = self.scenarios.get(("latency-bound", self.latency_db))
        if latency is not None:
            share = 100 * latency.med("rate_limited") / max(latency.med("requests"), 1)
            latency.note = f"429s {share:.1f}% of requests"

    # -- the report ----------------------------------------------------------------------------

    def table(self) -> str:
        header = [
            "scenario",
            "database",
            "records",
            "records/s",
            "% of ceiling",
            "peak RSS MB",
            "requests",
            "429s",
            "wall s",
            "job CPU s",
            "sim CPU s",
            "rest CPU s",
            "note",
        ]
        lines: list[list[str]] = []
        order = [load_name(self.args.records), load_name(self.args.large_records), "latency-bound"]
        ordered = sorted(
            self.scenarios.values(),
            key=lambda s: (
                order.index(s.name) if s.name in order else len(order),
                self.kinds.index(s.database),
            ),
        )
        for scenario in ordered:
            kind = scenario.database
            pct = scenario.percent
            lines.append(
                [
                    scenario.name,
                    kind,
                    f"{scenario.records:,}",
                    f"{scenario.rate:,.0f}" if scenario.records else "-",
                    f"{pct:.0f}%" if pct is not None else "-",
                    f"{scenario.med('peak_rss_mb'):.1f}",
                    f"{scenario.med('requests'):.0f}",
                    f"{scenario.med('rate_limited'):.0f}",
                    f"{scenario.med('wall'):.2f}",
                    f"{scenario.med('cpu'):.2f}",
                    f"{scenario.med('sim_cpu'):.2f}",
                    f"{scenario.med('other_cpu'):.2f}",
                    scenario.note,
                ]
            )
            ceiling = self.ceilings.get(kind)
            if ceiling is not None and scenario.ceiling_name == "bare batched upsert":
                lines.append(
                    upsert_row(
                        "  bare upsert ceiling",
                        ceiling,
                        "100%",
                        "1,000-row transactions",
                    )
                )
                core = self.core_upserts.get(kind)
                if core is not None:
                    lines.append(
                        upsert_row(
                            "  SQLAlchemy Core upsert",
                            core,
                            f"{100 * core.rate / ceiling.rate:.0f}%",
                            f"reference: the load is {100 * scenario.rate / core.rate:.0f}% of it",
                        )
                    )
        for name, times in self.startup.items():
            lines.append(wall_only_row(f"start-up: {name}", "-", "-", "-", "-", median(times), ""))
        widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
        right = set(range(2, len(header) - 1))  # the figures; names and notes to the left

        def fmt(row: list[str]) -> str:
            cells = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(header), rule, *(fmt(row) for row in lines)])

    def targets(self) -> list[Target]:
        targets: list[Target] = []
        latency = self.scenarios.get(("latency-bound", self.latency_db))
        if latency is not None and latency.percent is not None:
            share = 100 * latency.med("rate_limited") / max(latency.med("requests"), 1)
            targets.append(
                Target(
                    f"latency-bound >= 95% of ceiling with 429s < 1%: {latency.percent:.1f}%, "
                    f"429s {share:.1f}%",
                    latency.percent >= 95 and share < 1,
                )
            )
        small, large = load_name(self.args.records), load_name(self.args.large_records)
        for kind in self.kinds:
            load = self.scenarios.get((small, kind))
            if load is not None and load.percent is not None:
                targets.append(
                    Target(
                        f"local {short(self.args.records)} {kind} >= 20,000 records/s: "
                        f"{load.rate:,.0f} records/s",
                        load.rate >= 20_000,
                    )
                )
                needed = load.med("wall") * load.percent / 70  # the wall time 70% means
                cpu = load.med("cpu") + load.med("sim_cpu") + load.med("other_cpu")
                cores = os.cpu_count() or 1
                targets.append(
                    Target(
                        f"local {short(self.args.records)} {kind} >= 70% of the bare upsert: "
                        f"{load.percent:.0f}% ({load.med('wall'):.2f} s; 70% means "
                        f"{needed:.2f} s; the CPU used, {cpu:.2f} s, takes {cpu / cores:.2f} s "
                        f"on {cores} cores)",
                        load.percent >= 70,
                    )
                )
            big = self.scenarios.get((large, kind))
            if big is not None and load is not None and big is not load:
                rss, base = big.med("peak_rss_mb"), load.med("peak_rss_mb")
                targets.append(
                    Target(
                        f"peak RSS at {short(self.args.large_records)} {kind} < 100 MB and within "
                        f"15% of {short(self.args.records)}: {rss:.1f} MB vs {base:.1f} MB "
                        f"({100 * (rss / base - 1):+.0f}%)",
                        rss < 100 and rss <= 1.15 * base,
                    )
                )
            for name, overlap in (
                ("nothing new", 0),
                (f"nothing new, {NEW_RECORDS:,} in overlap", NEW_RECORDS),
            ):
                idle = self.scenarios.get((name, kind))
                if idle is None:
                    continue
                allowed = 1 + math.ceil(overlap / PAGE)
                wall, requests = idle.med("wall"), idle.med("requests")
                targets.append(
                    Target(
                        f"{name} {kind} <= 0.5 s and {allowed} request(s) "
                        f"(1 + {allowed - 1} overlap pages): {wall:.2f} s, {requests:.0f} requests",
                        wall <= 0.5 and requests <= allowed,
                    )
                )
            new = self.scenarios.get((f"+{NEW_RECORDS:,} new", kind))
            if new is not None:
                targets.append(
                    Target(
                        f"{NEW_RECORDS:,} new {kind} < 1 s: {new.med('wall'):.2f} s",
                        new.med("wall") < 1,
                    )
                )
        return targets

    def results(self, targets: list[Target]) -> dict[str, Any]:
        return {
            "machine": machine_info(self.dbs if "postgresql" in self.kinds else None),
            "options": {k: v for k, v in vars(self.args).items() if k != "postgres"},
            "duration_s": time.monotonic() - self.started,
            "scenarios": [s.as_dict() for s in self.scenarios.values()],
            "ceilings": {
                kind: {
                    "records": c.records,
                    "seconds": c.seconds,
                    "median_records_per_s": c.rate,
                    "method": "SQLite: executemany upsert, WAL, synchronous=NORMAL"
                    if kind == "sqlite"
                    else "PostgreSQL: COPY to a temp table + INSERT ... SELECT ... ON CONFLICT",
                    "batch": 1000,
                }
                for kind, c in self.ceilings.items()
            },
            "core_upserts": {
                kind: {
                    "records": c.records,
                    "seconds": c.seconds,
                    "median_records_per_s": c.rate,
                    "method": "SQLAlchemy Core executemany of INSERT ... ON CONFLICT DO UPDATE, "
                    "parameters converted by SQLAlchemy (a reference, no target)",
                    "batch": 1000,
                }
                for kind, c in self.core_upserts.items()
            },
            "startup_s": {
                name: {"runs": t, "median": median(t)} for name, t in self.startup.items()
            },
            "targets": [{"target": t.text, "passed": t.passed} for t in targets],
        }


def wall_only_row(
    name: str, database: str, records: str, rate: str, percent: str, wall: float, note: str
) -> list[str]:
    """A table row of something that is not a job run: no RSS, requests, 429s or CPU."""
    unmeasured = ["-"] * 3  # RSS, requests and 429s before the wall time; the CPUs after
    return [name, database, records, rate, percent, *unmeasured, f"{wall:.2f}", *unmeasured, note]


def upsert_row(name: str, upsert: Ceiling, percent: str, note: str) -> list[str]:
    """The table row of a reference upsert of the load's rows."""
    rate = f"{upsert.rate:,.0f}"
    return wall_only_row(
        name, upsert.database, f"{upsert.records:,}", rate, percent, median(upsert.seconds), note
    )


def short(records: int) -> str:
    """100k, 1M."""
    if records % 1_000_000 == 0:
        return f"{records // 1_000_000}M"
    return f"{records / 1000:,.0f}k"


def load_name(records: int) -> str:
    return f"initial load {short(records)}"


def new_records(base_url: str, run: int) -> list[dict[str, Any]]:
    """``NEW_RECORDS`` fresh changes created 6 to 9 minutes ago, with ids no run reuses."""
    now = datetime.now(UTC)
    records = []
    for i in range(NEW_RECORDS):
        created = now - timedelta(minutes=9) + timedelta(seconds=180 * i / NEW_RECORDS)
        record_id = NEW_ID_BASE + run * 100_000 + i
        records.append(
            {
                "id": record_id,
                "action": "update",
                "action_label": "Updated",
                "actor_id": 4242,
                "actor_name": "Bench Admin",
                "change_description": f"Bench change {i}",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ip_address": "203.0.113.7",
                "source_id": 77,
                "source_label": "Bench trigger",
                "source_type": "rule",
                "url": f"{base_url}/api/v2/audit_logs/{record_id}.json",
            }
        )
    return records


def machine_info(dbs: Databases | None) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_at_start": LOAD_AT_START,
        "load_at_end": os.getloadavg()[0],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mb": memory_mb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": dbs.postgres_version() if dbs is not None else None,
        "git_commit": git("rev-parse", "HEAD"),
        "git_dirty": bool(git("status", "--porcelain", "--", "etl", "migrations")),
    }


# -- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--quick",
        action="store_true",
        help="smaller and faster (about 2-3 minutes): 1 run, 200k instead of 1M, 5,000 "
        "latency-bound records",
    )
    add("--runs", type=int, help="runs per figure (default 3; --quick: 1)")
    add(
        "--json",
        default="bench-results.json",
        metavar="PATH",
        help="raw and median results with machine info (default: bench-results.json)",
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
        default="sqlite,postgresql",
        help="comma-separated: sqlite, postgresql (default both)",
    )
    add(
        "--postgres",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help="PostgreSQL server (SQLAlchemy URL of an existing database; default "
        "$ETL_BENCH_POSTGRES, $ETL_TEST_POSTGRES or postgres@127.0.0.1:5432/test)",
    )
    args = parser.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    if args.large_records is None:
        args.large_records = 200_000 if args.quick else 1_000_000
    args.large_runs = args.large_runs or (1 if args.quick else min(args.runs, 2))
    if args.latency_records is None:
        args.latency_records = 5_000 if args.quick else 50_000
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    unknown = set(kinds) - {"sqlite", "postgresql"}
    if unknown or not kinds:
        parser.error(f"--databases: unknown kind(s) {', '.join(sorted(unknown)) or '(none)'}")
    args.databases = kinds
    if min(args.runs, args.large_runs, args.latency_runs, args.records) < 1:
        parser.error("--runs, --large-runs, --latency-runs and --records must be at least 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    cleanup = Cleanup()
    try:
        bench = Bench(args, cleanup)
        bench.run()
        targets = bench.targets()
        results = bench.results(targets)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        return 130
    except JobFailed as exc:
        print(f"bench: the job failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup.run_all()
    machine = results["machine"]
    print(
        f"\nzendesk-audit-etl benchmark, {machine['date']}: {machine['cpu']}, "
        f"{machine['cores']} cores, Python {machine['python']}, SQLite {machine['sqlite']}"
        + (f", PostgreSQL {machine['postgresql']}" if machine["postgresql"] else "")
        + f"; medians of {args.runs} run(s) ({args.large_runs} for the large load, "
        f"{args.latency_runs} latency-bound)\n"
    )
    load = max(machine["load_at_start"], machine["load_at_end"])
    if load > 0.5 * (machine["cores"] or 1):
        print(
            f"note: load average {machine['load_at_start']:.1f} at the start, "
            f"{machine['load_at_end']:.1f} at the end (the benchmark itself adds about 1.5): "
            "other processes may have competed for the CPU; compare wall s with job CPU s\n"
        )
    print(bench.table())
    print(LEGEND)
    print("\nTargets:")
    for target in targets:
        print(f"  [{'PASS' if target.passed else 'FAIL'}] {target.text}")
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nraw results: {args.json} ({results['duration_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
