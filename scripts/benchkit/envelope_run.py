"""One run of one envelope cell (``scripts/bench_envelope.py``): the simulator with the
cell's limit and latency, the other app or the busy process beside the job, the job's
``sync`` and what it reached against the ceiling."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from benchkit.databases import Databases
from benchkit.envelope_cells import PAGE, Cell
from benchkit.support import OAUTH_TOKEN, Cleanup, Job, Simulator


class OtherClient:
    """Another app on the account: ``per_minute`` evenly spaced requests, until stopped.

    Each request goes on its own schedule (a few threads), however long the ones before it
    take: one after another, a 200 ms answer would cap it below 350 a minute."""

    def __init__(self, url: str, per_minute: int) -> None:
        self.url = url + "/api/v2/audit_logs"
        self.spacing = 60.0 / per_minute
        self.stop = threading.Event()
        self.requests = 0
        self.rate_limited = 0
        self.started = self.stopped = 0.0
        self._local = threading.local()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def counts(self) -> tuple[int, int]:
        """Requests sent so far, and how many were refused."""
        with self._lock:
            return self.requests, self.rate_limited

    @property
    def per_minute(self) -> float:
        """What it really sent a minute, from its first request to its stop."""
        return 60 * self.requests / max(self.stopped - self.started, 1e-9)

    def _run(self) -> None:
        self.started = due = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            while not self.stop.wait(max(0.0, due - time.monotonic())):
                due += self.spacing
                pool.submit(self._one)
            self.stopped = time.monotonic()

    def _one(self) -> None:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {OAUTH_TOKEN}"
        response = session.get(self.url, params={"page[size]": "1"}, timeout=30)
        with self._lock:
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
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cell.busy)
    ]
    try:
        url = dbs.create("sqlite")
        job = Job(cleanup, sim, url, workdir, cell.limit)
        job.migrate()
        time.sleep(1.0)  # the migrate's requests (none) and start-up are out of the minute
        if other is not None:
            other.thread.start()
            time.sleep(2.0)  # the other app is already running when the job starts
        before = other.counts() if other is not None else (0, 0)
        load = os.getloadavg()[0]
        result = job.sync()
        stats = sim.stats()
        after = other.counts() if other is not None else (0, 0)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        if other is not None:
            other.stop.set()
            other.thread.join(30)
        sim.stop()
    stored = dbs.count_rows(url)
    if stored != cell.records:
        raise RuntimeError(f"{cell.name}: {stored} rows stored of {cell.records}")
    rate = cell.records / result.wall
    # The simulator counts from the job's start: the other app's requests meanwhile are off.
    requests = result.requests - (after[0] - before[0])
    return {
        "wall_s": result.wall,
        "records_per_s": rate,
        "share": 100 * rate / cell.ceiling,
        "requests": requests,
        # Requests beyond one per page of records: re-read pages at split points.
        "extra_requests_share": 100 * (requests - cell.records / PAGE) / (cell.records / PAGE),
        "rate_limited": result.rate_limited - (after[1] - before[1]),
        "rate_limited_share": 100 * result.rate_limited / max(result.requests, 1),
        "other_requests": other.requests if other else 0,
        "other_rate_limited": other.rate_limited if other else 0,
        "other_per_minute": other.per_minute if other else 0.0,
        "peak_in_flight": float(stats.get("peak_in_flight", 0)),
        # Between the job's first and last answers (start-up, on a loaded machine up to
        # 1.5 s, left out): pages of the job a second, against the ceiling in pages.
        "steady_share": 100
        * (requests - 1)
        / max(float(stats.get("api_span_s", 0.0)), 1e-9)
        / ((cell.limit - cell.others) / 60),
        "peak_rss_mb": result.peak_rss_mb,
        "cpu_s": result.cpu,  # the job's user + system CPU: on a busy host, what it cost
        "load_at_start": load,
    }
