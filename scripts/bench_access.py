"""The access log's backfill against the rate-limit ceiling, as bench_envelope.py measures
the audit log's: a day of access records read by the real ``sync`` (SQLite, default
settings but ``requests_per_minute`` = the limit and ``streams = ["access_logs"]``) from
the simulator as its own process, with the limit enforced per minute and a latency with
jitter. The ceiling is the limit x 100 records a page; the share is records / the whole
process's wall time against it (start-up included), and in brackets between the job's
first and last answers. Each cell runs ``--repeats`` times; the medians are printed.

    python scripts/bench_access.py [--seconds 20] [--repeats 3] [--limit 2500]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchkit.support import Cleanup, Job, Simulator

PAGE = 100


def run_once(cleanup: Cleanup, limit: int, seconds: float, workdir: Path) -> dict[str, float]:
    records = int(limit / 60 * seconds) * PAGE
    sim = Simulator(
        cleanup, 0, rate_limit=limit, latency=0.2, jitter=0.1,
        access_records=records, access_days=1.0,
    )  # fmt: skip
    try:
        path = workdir / f"access-{time.monotonic_ns()}.db"
        job = Job(cleanup, sim, f"sqlite:///{path}", workdir, limit)
        job.config.write_text(job.config.read_text() + '\n[sync]\nstreams = ["access_logs"]\n')
        job.migrate()
        time.sleep(1.0)  # start-up and the migrate are out of the minute
        result = job.sync()
        stats = sim.stats()
    finally:
        sim.stop()
    with sqlite3.connect(path) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM zendesk_access_logs").fetchone()[0]
    if stored != records:
        raise RuntimeError(f"{stored} access rows stored of {records}")
    ceiling = limit / 60 * PAGE
    span = max(float(stats.get("api_span_s", 0.0)), 1e-9)
    return {
        "records": records,
        "wall_s": result.wall,
        "share": 100 * records / result.wall / ceiling,
        "steady_share": 100 * (result.requests - 1) / span / (limit / 60),
        "requests": result.requests,
        "rate_limited": result.rate_limited,
        "cpu_s": result.cpu,
        "sim_cpu_s": result.sim_cpu,
        "peak_in_flight": float(stats.get("peak_in_flight", 0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of traffic a run")
    parser.add_argument("--repeats", type=int, default=3, help="runs; the medians are shown")
    parser.add_argument("--limit", type=int, default=2500, help="the limit per minute")
    args = parser.parse_args(argv)
    runs = []
    cleanup = Cleanup()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                runs.append(run_once(cleanup, args.limit, args.seconds, Path(tmp)))
                print(runs[-1], file=sys.stderr)
    finally:
        cleanup.run_all()
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(
        f"access log, {args.limit:,}/min, 200 ± 100 ms: {median['records']:,.0f} records in "
        f"{median['wall_s']:.1f} s, {median['share']:.0f}% of the ceiling "
        f"({median['steady_share']:.0f}% between the first and last answers), "
        f"{median['rate_limited']:.0f} 429s (medians of {args.repeats})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
