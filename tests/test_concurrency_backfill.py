"""A backfill keeps as many requests in flight as its budget and the measured latency need.

Against the simulator over real HTTP; the client's pacing clock is fake (waits recorded,
not spent), so the rate limiter never holds requests back and what bounds the number of
requests in flight is the concurrency target alone; the simulator counts them.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from support import (
    FakeTime,
    assert_table_matches,
    fake_time_client,
    fresh_store,
    recent,
    sim_account,
)

from etl.sync.account import sync_account
from etl.sync.backfill import QUEUE_MAX_PAGES, writer_behind
from etl.sync.run import RunHooks
from etl.zendesk.client import ZendeskClient
from etl.zendesk.concurrency import target
from etl.zendesk.ratelimit import RateLimiter
from zendesk_sim import SimulatedZendesk, generate_records

LATENCY = 0.3  # seconds an answer takes


def backfill(tmp_path: Path, requests_per_minute: int, workers: int = 64) -> SimulatedZendesk:
    end = recent(30)
    records = list(generate_records(6_000, start=end - timedelta(days=20), end=end, seed=11))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    # The account's limit is the budget (the headers say so; nothing here comes near it).
    with SimulatedZendesk(
        records, latency=LATENCY, rate_limit_per_minute=requests_per_minute
    ) as sim:
        account = sim_account(sim.url, requests_per_minute=requests_per_minute, workers=workers)
        with fake_time_client(account) as client:
            summary = sync_account(account, client, fresh_store(url), hooks=RunHooks())
        assert summary.status == "success"
        assert_table_matches(url, sim.visible_records())
        return sim


def test_a_high_budget_gets_more_requests_in_flight_than_the_old_four(tmp_path: Path) -> None:
    # 2,500/min at 0.3 s: 12.5 requests in flight carry the budget; the target adds a margin.
    assert target(2500 / 60, LATENCY, 64) >= 13
    sim = backfill(tmp_path, 2500)
    # At most what a latency of 1 s would need (a loaded machine adds to the 0.3 s).
    assert 6 <= sim.peak_in_flight <= target(2500 / 60, 1.0, 64)


def test_never_more_in_flight_than_the_budget_can_use(tmp_path: Path) -> None:
    # 120/min = 2 a second at 0.3 s: fewer than one request is busy on average; two at most.
    assert target(2, LATENCY, 64) == 2
    sim = backfill(tmp_path, 120)
    assert sim.peak_in_flight <= 2


def test_workers_bounds_the_requests_in_flight(tmp_path: Path) -> None:
    sim = backfill(tmp_path, 2500, workers=3)
    assert sim.peak_in_flight <= 3


class RecordingLimiter(RateLimiter):
    """The real limiter, noting each caller's thread and priority."""

    def __init__(self, requests_per_minute: int, fake: FakeTime) -> None:
        super().__init__(requests_per_minute, clock=fake.clock, sleep=fake.sleep)
        self.calls: list[tuple[str, int, float]] = []
        self._calls_lock = threading.Lock()

    def acquire(self, priority: float = 0.0, deadline: float | None = None) -> float:
        with self._calls_lock:
            thread = threading.current_thread()
            self.calls.append((thread.name, thread.ident or 0, priority))
        return super().acquire(priority, deadline)


def test_fetchers_wait_for_the_budget_by_their_slices_pages_left(tmp_path: Path) -> None:
    end = recent(30)
    records = list(generate_records(6_000, start=end - timedelta(days=20), end=end, seed=11))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    fake = FakeTime()
    with SimulatedZendesk(records, latency=0.05) as sim:
        account = sim_account(sim.url, requests_per_minute=2500, workers=8)
        limiter = RecordingLimiter(2500, fake)
        client = ZendeskClient(account.zendesk, sleep=fake.sleep, clock=fake.clock, limiter=limiter)
        with client:
            summary = sync_account(account, client, fresh_store(url), hooks=RunHooks())
        assert summary.status == "success"
        assert_table_matches(url, sim.visible_records())
    assert client.priority == 0.0  # the run's own client is first come again afterwards
    by_fetcher: dict[int, list[float]] = {}
    for name, ident, priority in limiter.calls:
        if name == "backfill-fetcher":
            by_fetcher.setdefault(ident, []).append(priority)
        else:
            assert priority == 0.0  # the first page, read alone
    assert len(by_fetcher) >= 2
    # A fetcher's last request may find nothing left of its slice; the others have pages.
    assert all(p > 0 for priorities in by_fetcher.values() for p in priorities[:-1])
    # Pages left, as each slice is read: they fall from the first request to the last.
    long_reads = [p for p in by_fetcher.values() if len(p) >= 4]
    assert long_reads and all(p[-1] < p[0] for p in long_reads)


def test_a_full_queue_is_the_writer_behind_whatever_the_fetchers() -> None:
    """No fetcher is added while the writer is behind: a page waiting per running fetcher
    (at least four, or ``workers`` if fewer), and always once the queue is full. Past the
    queue's 64 pages, with hundreds of fetchers at a high latency, a page per fetcher could
    never wait, and the count alone would add fetchers up to ``workers`` behind a writer
    that cannot keep up."""
    assert not writer_behind(3, running=2, workers=64, capacity=QUEUE_MAX_PAGES)
    assert writer_behind(4, running=2, workers=64, capacity=QUEUE_MAX_PAGES)
    assert writer_behind(2, running=1, workers=2, capacity=8)  # two workers: two pages
    assert not writer_behind(9, running=10, workers=64, capacity=QUEUE_MAX_PAGES)
    assert writer_behind(10, running=10, workers=64, capacity=QUEUE_MAX_PAGES)
    # 100 fetchers, the queue full at 64: behind
    assert writer_behind(QUEUE_MAX_PAGES, running=100, workers=256, capacity=QUEUE_MAX_PAGES)
