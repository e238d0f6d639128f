"""The rate-limit envelope: how much of the API's ceiling a backfill reaches, and its 429s.

Each cell starts the simulator as its own process with an enforced limit per minute
(counted as Zendesk counts it, see zendesk_sim/edge/ratelimit.py) and a latency with jitter
(mean +/- spread, uniform), then runs the real command line (``sync``, SQLite) with
default settings apart from ``requests_per_minute`` = the account's limit, on enough
records for about ``--seconds`` of traffic (60 by default: start-up and the last answer's
wait are then a small share, as in a backfill of hours). The ceiling is the limit x 100
records a page; the rate is records / the whole process's wall time (start-up and the
first page, read alone, included); in brackets, between the job's first and last answers.
429s are the simulator's count over the job's requests.

The shared-quota cell runs another client beside the job, taking half of the limit
(evenly spaced requests on the same account, from 2 s before the job starts); its ceiling
is what remains, every 429 (the job's or the other client's) counts, and it lasts at
least ``SHARED_SECONDS`` so that the account's count refreshes twice under the job.

The busy-neighbour cell runs one ``python -c "while True: pass"`` beside the job, as a
host's other work would. Requests beyond the pages are the job's requests over one per
100 records (the pages re-read where slices meet).

Targets (issue 27), checked on the medians and printed PASS/FAIL: every cell at 97% of the
ceiling or more (the busy-neighbour cell 95%), under 2% requests beyond the pages, no 429.

Every cell runs ``--repeats`` times; the table shows the medians, and the JSON file each
run and the medians.

    python scripts/bench_envelope.py [--seconds 60] [--repeats 3] [--strict] [--only TEXT]
        [--json bench-envelope.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from benchkit.databases import Databases
from benchkit.envelope_cells import SHARED_SECONDS, Cell, cells
from benchkit.envelope_report import table, targets
from benchkit.envelope_run import run_cell
from benchkit.hostspeed import describe, reference_cpu
from benchkit.support import Cleanup


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench_envelope.py", description=__doc__)
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="seconds of traffic per cell (default 60)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per cell; the table shows medians (3)"
    )
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
    if args.repeats < 1 or args.seconds <= 0:
        parser.error("--repeats must be at least 1 and --seconds positive")
    cleanup = Cleanup()
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    reference = reference_cpu()
    print(describe(reference), flush=True)
    done: list[Cell] = []
    try:
        dbs = Databases(cleanup, args.postgres_admin_url)
        for cell in cells(args.seconds, args.strict):
            if args.only and args.only not in cell.name:
                continue
            for run in range(args.repeats):
                result = run_cell(cleanup, dbs, cell, dbs.root)
                cell.runs.append(result)
                print(
                    f"{cell.name}, run {run + 1}: {result['share']:.1f}% of the ceiling, "
                    f"{result['rate_limited']:.0f} 429s in {result['requests']:.0f} requests, "
                    f"peak {result['peak_in_flight']:.0f} in flight, "
                    f"{result['extra_requests_share']:.1f}% beyond the pages, "
                    f"CPU {result['cpu_s']:.1f} s, load {result['load_at_start']:.1f}",
                    flush=True,
                )
            done.append(cell)
    finally:
        cleanup.run_all()
    print()
    print(table(done))
    met = targets(done)
    print("\nTargets (medians):")
    for text, passed in met:
        print(f"  [{'PASS' if passed else 'FAIL'}] {text}")
    results = {
        "machine": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "cores": os.cpu_count(),
            "load_at_start": load_at_start,
            "load_at_end": os.getloadavg()[0],
            "host_reference_cpu_s": reference,
        },
        "seconds_of_traffic": args.seconds,
        "shared_quota_seconds": max(args.seconds, SHARED_SECONDS),
        "repeats": args.repeats,
        "cells": [cell.as_dict() for cell in done],
        "targets": [{"text": text, "passed": passed} for text, passed in met],
        "duration_s": time.monotonic() - started,
    }
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nraw results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
