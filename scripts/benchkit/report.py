"""The bench's table, its targets and its JSON, for every piece.

``run_bench(args, run, targets)`` is each piece's ``main``: it fills a ``BenchRun``
with ``run``, cleans up whatever happens, then prints the table, the legend and
``targets``, and writes the raw results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from benchkit.databases import Databases
from benchkit.hostspeed import describe, reference_cpu
from benchkit.results import BenchRun, Ceiling, Target, load_name
from benchkit.support import ROOT, Cleanup, JobFailed, median

LOAD_AT_START = os.getloadavg()[0]
LEGEND = """
records/s = records / wall time of the whole sync process (start-up and imports included);
% of ceiling: of the bare batched upsert of the same rows (loads), or of 700 requests/min x
100 records (latency-bound); peak RSS = the sync process's own VmHWM; requests and 429s as
counted by the simulator; job CPU = user + system seconds of the sync process; sim CPU =
the simulator's; rest CPU = the rest of the machine's meanwhile (on PostgreSQL, mostly its
server). On N cores no run can take less than (job + sim + rest CPU) / N."""
HEADER = [
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


def table(bench: BenchRun) -> str:
    lines: list[list[str]] = []
    args = bench.args
    order = [load_name(args.records), load_name(args.large_records), "latency-bound"]
    ordered = sorted(
        bench.scenarios.values(),
        key=lambda s: (
            order.index(s.name) if s.name in order else len(order),
            bench.kinds.index(s.database),
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
        ceiling = bench.ceilings.get(kind)
        if ceiling is not None and scenario.ceiling_name == "bare batched upsert":
            lines.append(
                upsert_row("  bare upsert ceiling", ceiling, "100%", "1,000-row transactions")
            )
            core = bench.core_upserts.get(kind)
            if core is not None:
                lines.append(
                    upsert_row(
                        "  SQLAlchemy Core upsert",
                        core,
                        f"{100 * core.rate / ceiling.rate:.0f}%",
                        f"reference: the load is {100 * scenario.rate / core.rate:.0f}% of it",
                    )
                )
    if not any(s.ceiling_name == "bare batched upsert" for s in bench.scenarios.values()):
        # the references alone (scripts/bench_reference.py): no load to put them under
        for kind, ceiling in bench.ceilings.items():
            lines.append(upsert_row("bare upsert ceiling", ceiling, "100%", ""))
            core = bench.core_upserts.get(kind)
            if core is not None:
                percent = f"{100 * core.rate / ceiling.rate:.0f}%"
                lines.append(upsert_row("SQLAlchemy Core upsert", core, percent, ""))
    for name, times in bench.startup.items():
        lines.append(wall_only_row(f"start-up: {name}", "-", "-", "-", "-", median(times), ""))
    widths = [max(len(row[i]) for row in [HEADER, *lines]) for i in range(len(HEADER))]
    right = set(range(2, len(HEADER) - 1))  # the figures; names and notes to the left

    def fmt(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(HEADER), rule, *(fmt(row) for row in lines)])


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


def _upserts(upserts: dict[str, Ceiling], method: Callable[[str], str]) -> dict[str, Any]:
    return {
        kind: {
            "records": c.records,
            "seconds": c.seconds,
            "median_records_per_s": c.rate,
            "method": method(kind),
            "batch": 1000,
        }
        for kind, c in upserts.items()
    }


def results(bench: BenchRun, targets: list[Target]) -> dict[str, Any]:
    return {
        "machine": machine_info(bench.dbs if "postgresql" in bench.kinds else None),
        "options": {k: v for k, v in vars(bench.args).items() if k != "postgres"},
        "duration_s": time.monotonic() - bench.started,
        "scenarios": [s.as_dict() for s in bench.scenarios.values()],
        "ceilings": _upserts(
            bench.ceilings,
            lambda kind: (
                "SQLite: executemany upsert, WAL, synchronous=NORMAL"
                if kind == "sqlite"
                else "PostgreSQL: COPY to a temp table + INSERT ... SELECT ... ON CONFLICT"
            ),
        ),
        "core_upserts": _upserts(
            bench.core_upserts,
            lambda kind: (
                "SQLAlchemy Core executemany of INSERT ... ON CONFLICT DO UPDATE, "
                "parameters converted by SQLAlchemy (a reference, no target)"
            ),
        ),
        "startup_s": {name: {"runs": t, "median": median(t)} for name, t in bench.startup.items()},
        "targets": [{"target": t.text, "passed": t.passed} for t in targets],
    }


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
        "host_reference_cpu_s": reference_cpu(),
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


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_bench(
    args: argparse.Namespace,
    run: Callable[[BenchRun], None],
    targets: Callable[[BenchRun], list[Target]],
) -> int:
    """Measure with ``run``, clean up, then print and save: a piece's exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    cleanup = Cleanup()
    try:
        bench = BenchRun(args, cleanup)
        run(bench)
        found = targets(bench)
        saved = results(bench, found)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        return 130
    except JobFailed as exc:
        print(f"bench: the job failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup.run_all()
    machine = saved["machine"]
    print(
        f"\nzendesk-audit-etl benchmark, {machine['date']}: {machine['cpu']}, "
        f"{machine['cores']} cores, Python {machine['python']}, SQLite {machine['sqlite']}"
        + (f", PostgreSQL {machine['postgresql']}" if machine["postgresql"] else "")
        + f"; medians of {args.runs} run(s) ({args.large_runs} for the large load, "
        f"{args.latency_runs} latency-bound)\n{describe(machine['host_reference_cpu_s'])}\n"
    )
    load = max(machine["load_at_start"], machine["load_at_end"])
    if load > 0.5 * (machine["cores"] or 1):
        print(
            f"note: load average {machine['load_at_start']:.1f} at the start, "
            f"{machine['load_at_end']:.1f} at the end (the benchmark itself adds about 1.5): "
            "other processes may have competed for the CPU; compare wall s with job CPU s\n"
        )
    print(table(bench))
    print(LEGEND)
    print("\nTargets:")
    for target in found:
        print(f"  [{'PASS' if target.passed else 'FAIL'}] {target.text}")
    Path(args.json).write_text(json.dumps(saved, indent=2) + "\n")
    print(f"\nraw results: {args.json} ({saved['duration_s']:.0f} s in all)")
    return 0
