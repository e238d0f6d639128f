"""The rate-limit envelope: how much of the API's ceiling a backfill reaches, and its 429s.

Each cell starts the simulator as its own process with an enforced limit per minute
(counted as Zendesk counts it, see zendesk_sim/ratelimit.py) and a latency with jitter
(mean +/- spread, uniform), then runs the real command line (``sync``, SQLite) with
default settings apart from ``requests_per_minute`` = the account's limit, on enough
records for about ``--seconds`` of traffic. The ceiling is the limit x 100 records a page;
the rate is records / the whole process's wall time (start-up and the first page, read
alone, included). 429s are the simulator's count over the job's requests.

The shared-quota cell runs another client beside the job, taking half of the limit
(evenly spaced requests on the same account); its ceiling is what remains, and every 429,
the job's or the other client's, counts.

    python scripts/bench_envelope.py [--seconds 30] [--runs 1] [--json bench-envelope.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from bench_support import OAUTH_TOKEN, Cleanup, Databases, Job, Simulator

PAGE = 100
CELLS: list[tuple[int, float, float]] = [  # limit per minute, latency, jitter
    (700, 0.2, 0.1),
    (700, 0.6, 0.4),
    (2500, 0.2, 0.1),
    (2500, 0.6, 0.4),
]
SHARED = (700, 0.2, 0.1)  # the shared-quota cell: another client takes half of it


@dataclass
class Cell:
    name: str
    limit: int
    latency: float
    jitter: float
    mode: str
    others: int  # requests per minute another client takes
    records: int
    runs: list[dict[str, float]]

    @property
    def ceiling(self) -> float:
        return (self.limit - self.others) * PAGE / 60

    def median(self, key: str) -> float:
        return statistics.median(run[key] for run in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit_per_minute": self.limit,
            "latency_s": self.latency,
            "jitter_s": self.jitter,
            "mode": self.mode,
            "other_client_per_minute": self.others,
            "records": self.records,
            "ceiling_records_per_s": self.ceiling,
            "median_records_per_s": self.median("records_per_s"),
            "median_share_of_ceiling": self.median("share"),
            "median_steady_share_of_ceiling": self.median("steady_share"),
            "median_rate_limited_share": self.median("rate_limited_share"),
            "runs": self.runs,
        }


class OtherClient:
    """Another app on the account: ``per_minute`` evenly spaced requests, until stopped."""

    def __init__(self, url: str, per_minute: int) -> None:
        self.url = url + "/api/v2/audit_logs"
        self.spacing = 60.0 / per_minute
        self.stop = threading.Event()
        self.requests = 0
        self.rate_limited = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {OAUTH_TOKEN}"
            due = time.monotonic()
            while not self.stop.wait(max(0.0, due - time.monotonic())):
                due += self.spacing
                response = session.get(self.url, params={"page[size]": "1"}, timeout=30)
                self.requests += 1
                self.rate_limited += response.status_code == 429


def run_cell(cleanup: Cleanup, dbs: Databases, cell: Cell, workdir: Path) -> dict[str, float]:
    sim = Simulator(
        cleanup,
        cell.records,
        rate_limit=cell.limit,
        latency=cell.latency,
        jitter=cell.jitter,
        rate_limit_mode=cell.mode,
    )
    other = OtherClient(sim.url, cell.others) if cell.others else None
    try:
        url = dbs.create("sqlite")
        job = Job(cleanup, sim, url, workdir, cell.limit)
        job.migrate()
        time.sleep(1.0)  # the migrate's requests (none) and start-up are out of the minute
        if other is not None:
            other.thread.start()
            time.sleep(2.0)  # the other app is already running when the job starts
        result = job.sync()
        stats = sim.stats()
    finally:
        if other is not None:
            other.stop.set()
            other.thread.join(30)
        sim.stop()
    stored = dbs.count_rows(url)
    if stored != cell.records:
        raise RuntimeError(f"{cell.name}: {stored} rows stored of {cell.records}")
    rate = cell.records / result.wall
    job_429 = result.rate_limited - (other.rate_limited if other else 0)
    return {
        "wall_s": result.wall,
        "records_per_s": rate,
        "share": 100 * rate / cell.ceiling,
        "requests": result.requests - (other.requests if other else 0),
        "rate_limited": job_429,
        "rate_limited_share": 100 * result.rate_limited / max(result.requests, 1),
        "other_requests": other.requests if other else 0,
        "other_rate_limited": other.rate_limited if other else 0,
        "peak_in_flight": float(stats.get("peak_in_flight", 0)),
        # Between the job's first and last answers (start-up, on a loaded machine up to
        # 1.5 s, left out): pages of the job a second, against the ceiling in pages.
        "steady_share": 100
        * (result.requests - (other.requests if other else 0) - 1)
        / max(float(stats.get("api_span_s", 0.0)), 1e-9)
        / ((cell.limit - cell.others) / 60),
        "peak_rss_mb": result.peak_rss_mb,
    }


def cells(seconds: float, strict: bool) -> list[Cell]:
    made = []
    for limit, latency, jitter in CELLS:
        records = int(limit / 60 * seconds) * PAGE
        name = f"{limit}/min, {latency * 1000:.0f} ± {jitter * 1000:.0f} ms"
        made.append(Cell(name, limit, latency, jitter, "burst", 0, records, []))
    limit, latency, jitter = SHARED
    # Long enough to cross the minute at which the account's count refreshes.
    records = int(limit / 2 / 60 * max(seconds, 75.0)) * PAGE
    name = f"{limit}/min shared (another app: half), {latency * 1000:.0f} ± {jitter * 1000:.0f} ms"
    made.append(Cell(name, limit, latency, jitter, "burst", limit // 2, records, []))
    if strict:
        limit, latency, jitter = CELLS[1]
        records = int(limit / 60 * seconds) * PAGE
        name = f"{limit}/min strict spacing, {latency * 1000:.0f} ± {jitter * 1000:.0f} ms"
        made.append(Cell(name, limit, latency, jitter, "strict", 0, records, []))
    return made


def table(done: list[Cell]) -> str:
    lines = [
        "| cell | records | records/s (ceiling) | share of the ceiling (steady state) | 429s "
        "| peak in flight |",
        "|---|---|---|---|---|---|",
    ]
    for cell in done:
        lines.append(
            f"| {cell.name} | {cell.records:,} | {cell.median('records_per_s'):,.0f} "
            f"({cell.ceiling:,.0f}) | {cell.median('share'):.1f}% "
            f"({cell.median('steady_share'):.1f}%) | "
            f"{cell.median('rate_limited'):.0f} of {cell.median('requests'):.0f} "
            f"({cell.median('rate_limited_share'):.2f}%)"
            + (
                f", other app {cell.median('other_rate_limited'):.0f} of "
                f"{cell.median('other_requests'):.0f}"
                if cell.others
                else ""
            )
            + f" | {cell.median('peak_in_flight'):.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench_envelope.py", description=__doc__)
    parser.add_argument("--seconds", type=float, default=30.0, help="traffic per cell (s)")
    parser.add_argument("--runs", type=int, default=1, help="runs per cell (median)")
    parser.add_argument("--strict", action="store_true", help="add a strict-spacing cell")
    parser.add_argument("--only", default=None, help="run the cells whose name has this")
    parser.add_argument("--json", default="bench-envelope.json", help="results file")
    parser.add_argument(
        "--postgres-admin-url",
        default=os.environ.get("ETL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL URL to create fresh databases from, should a cell use one "
        "(default: $ETL_TEST_POSTGRES, else the tests' server)",
    )
    args = parser.parse_args(argv)
    cleanup = Cleanup()
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    done: list[Cell] = []
    try:
        dbs = Databases(cleanup, args.postgres_admin_url)
        for cell in cells(args.seconds, args.strict):
            if args.only and args.only not in cell.name:
                continue
            for run in range(args.runs):
                result = run_cell(cleanup, dbs, cell, dbs.root)
                cell.runs.append(result)
                print(
                    f"{cell.name}, run {run + 1}: {result['share']:.1f}% of the ceiling, "
                    f"{result['rate_limited']:.0f} 429s in {result['requests']:.0f} requests, "
                    f"peak {result['peak_in_flight']:.0f} in flight",
                    flush=True,
                )
            done.append(cell)
    finally:
        cleanup.run_all()
    print()
    print(table(done))
    results = {
        "machine": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "load_at_start": load_at_start,
            "load_at_end": os.getloadavg()[0],
        },
        "seconds_of_traffic": args.seconds,
        "cells": [cell.as_dict() for cell in done],
        "duration_s": time.monotonic() - started,
    }
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
