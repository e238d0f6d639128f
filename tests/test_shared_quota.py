"""Another app takes half of the account's quota: a backfill keeps to the rest, no 429s.

Against the simulator over real HTTP, with its minute shortened to WINDOW seconds (and the
job's rate limiter told so), so that the run crosses several windows in a few seconds.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import requests
from support import SIM_OAUTH_TOKEN, assert_table_matches, fresh_store, recent, sim_account

from etl.sync.account import sync_account
from etl.sync.run import RunHooks
from etl.zendesk.client import ZendeskClient
from etl.zendesk.ratelimit import RateLimiter
from zendesk_sim import SimulatedZendesk, generate_records

WINDOW = 2.5  # seconds: the simulator's "minute"
LIMIT = 40  # requests a window (960/min)
PAGE = 10  # records a page: 50 pages, at half the limit about 3 windows


class OtherApp:
    """Another app on the account: ``per_window`` evenly spaced requests, until stopped."""

    def __init__(self, url: str, per_window: int) -> None:
        self.url = url + "/api/v2/audit_logs"
        self.spacing = WINDOW / per_window
        self.stop = threading.Event()
        self.answers: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {SIM_OAUTH_TOKEN}"
            due = time.monotonic()
            while not self.stop.wait(max(0.0, due - time.monotonic())):
                due += self.spacing
                response = session.get(self.url, params={"page[size]": "1"}, timeout=30)
                self.answers.append(response.status_code)


def test_with_another_app_on_half_the_quota_neither_sees_a_429(tmp_path: Path) -> None:
    end = recent(30)
    records = list(generate_records(500, start=end - timedelta(days=20), end=end, seed=5))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with SimulatedZendesk(
        records, rate_limit_per_minute=LIMIT, rate_limit_window=WINDOW, latency=0.05, jitter=0.03
    ) as sim:
        other = OtherApp(sim.url, LIMIT // 2)
        other.thread.start()
        account = sim_account(sim.url, requests_per_minute=LIMIT, page_size=PAGE)
        limiter = RateLimiter(LIMIT, window=WINDOW)
        try:
            with ZendeskClient(account.zendesk, limiter=limiter) as client:
                summary = sync_account(account, client, fresh_store(url), hooks=RunHooks())
        finally:
            other.stop.set()
            other.thread.join(30)
        assert summary.status == "success"
        assert_table_matches(url, sim.visible_records())
        job = [e.time for e in sim.requests if e.query.get("page[size]") == [str(PAGE)]]
        stats = sim.stats()
    # The job's requests spanned more than a whole window (its count refreshed under it).
    assert max(job) - min(job) > WINDOW
    assert stats["rate_limited"] == 0, stats["by_status"]
    assert summary.rate_limited == 0
    assert set(other.answers) == {200}
