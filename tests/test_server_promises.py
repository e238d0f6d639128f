"""Hand-made servers that each break one promise of the API, and what the job makes of it.

``Api`` is an honest cursor API over a fixed set of records on loopback (window, sort,
``filter[action]``, page size and cursor all honoured) until told to break exactly one
promise: the order, the window, the next link's query, progress, or the rate-limit
headers. Each test fails on the code before issue 23: records were lost for good, a run
never ended, or a header parked it. Each data test then lets the server heal, runs again
and counts the rows against what the server holds: nothing may be missing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from itertools import count
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from loopback import Exchange, LoopbackServer, Seen
from support import FakeTime, fresh_store, parse_zendesk_time, recent, sim_account, zendesk_time

from etl.common.errors import ExitCode, RetryBudgetExhausted
from etl.common.settings import AccountSettings
from etl.storage.store import Store
from etl.sync.account import sync_account
from etl.sync.job import run_accounts
from etl.sync.run import RunHooks, RunSummary
from etl.zendesk.client import ZendeskClient
from etl.zendesk.ratelimit import RateLimiter

RECORDS = 500
PAGE = 100
SPACING = timedelta(seconds=40)  # 500 records over 5.5 hours, the newest 30 minutes old
STRAY_ID = 9_000_000_000_000
HEALTHY = "healthy"


def history(n: int = RECORDS, burst: int = 0) -> list[dict[str, Any]]:
    """``n`` records, ``SPACING`` apart (the first ``burst`` in one second); every fifth a
    login."""
    first = recent(30) - SPACING * (n - 1)
    return [
        {
            "id": 1000 + i,
            "action": "login" if i % 5 == 0 else "update",
            "actor_id": 7,
            "created_at": zendesk_time(first + SPACING * max(i - burst + 1, 0)),
            "source_type": "user",
        }
        for i in range(n)
    ]


@dataclass
class Api:
    """The audit-log list endpoint over ``records``, breaking the promise ``mode`` names."""

    records: list[dict[str, Any]]
    mode: str = HEALTHY
    headers: dict[str, str] = field(default_factory=dict)  # added to every answer
    requests: int = 0
    nonce: Iterator[int] = field(default_factory=count)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[Seen] = field(default_factory=list)  # the server's record of requests

    def respond(self, exchange: Exchange) -> None:
        with self.lock:
            self.requests += 1
            served = self.requests
        if self.mode.endswith("then-500s") and served > 1:
            exchange.send(500, {"Content-Type": "text/plain", **self.headers}, b"oops")
            return
        pairs = parse_qsl(urlsplit(exchange.path).query, keep_blank_values=True)
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        start, end = (parse_zendesk_time(v) for v in params["filter[created_at][]"])
        actions = params.get("filter[action][]")
        chosen = [
            r
            for r in self.records
            if start <= parse_zendesk_time(r["created_at"]) <= end
            and (not actions or r["action"] in actions)
        ]
        sort = params.get("sort", ["-created_at"])[-1]
        if sort.startswith("-") or self.mode.startswith("newest-first"):
            chosen.reverse()  # Zendesk's default order
        size = int(params["page[size]"][-1])
        offset = int(params.get("page[after]", ["c0"])[-1][1:].partition("-")[0])
        page = [dict(r) for r in chosen[offset : offset + size]]
        more = offset + size < len(chosen)
        after = offset + size
        if self.mode.startswith("dated-2099") and offset == 0:
            page.append({**page[-1], "id": STRAY_ID, "created_at": "2099-01-01T00:00:00Z"})
        if self.mode == "nonce-loop" and after >= 6:  # back to the start, a new nonce
            after, more = 0, served < 300  # (a safety stop for the old code's sake)
        cursor = f"c{after}-{next(self.nonce)}" if self.mode == "nonce-loop" else f"c{after}"
        kept = [(k, v) for k, v in pairs if k != "page[after]"]
        kept = self.changed(kept, page)
        link = f"http://{exchange.handler.headers['Host']}/api/v2/audit_logs?" + urlencode(
            [*kept, ("page[after]", cursor)]
        )
        body = {
            "audit_logs": page,
            "meta": {"has_more": more, "after_cursor": cursor},  # kept on a last page too
            "links": {"next": link if more else None, "prev": None},
        }
        exchange.send(200, {"Content-Type": "application/json", **self.headers}, dumps(body))

    def changed(self, pairs: list[tuple[str, str]], page: list[dict[str, Any]]) -> list[Any]:
        """The next link's query, as the mode breaks it."""
        if self.mode == "link-later-start" and page:
            later = parse_zendesk_time(page[-1]["created_at"]) + timedelta(minutes=40)
            first = pairs.index(next(p for p in pairs if p[0] == "filter[created_at][]"))
            pairs[first] = ("filter[created_at][]", zendesk_time(later))
        elif self.mode == "link-no-sort":
            pairs = [p for p in pairs if p[0] != "sort"]
        elif self.mode == "link-other-filter":
            pairs = [*pairs, ("filter[action][]", "login")]
        return pairs


def dumps(body: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(body)


@pytest.fixture
def api() -> Iterator[tuple[Api, str]]:
    server_api = Api(history())
    with LoopbackServer(server_api.respond) as server:
        server_api.seen = server.seen
        yield server_api, server.url


def run(account: AccountSettings, store: Store, clock: FakeTime | None = None) -> RunSummary:
    """One sync whose waits (retries, the rate limiter) are recorded, not slept."""
    clock = clock or FakeTime()
    limiter = RateLimiter(account.zendesk.requests_per_minute, clock=clock.clock, sleep=clock.sleep)
    with ZendeskClient(
        account.zendesk, limiter=limiter, sleep=clock.sleep, clock=clock.clock, jitter=lambda: 0.5
    ) as client:
        return sync_account(account, client, store)


def stored_ids(store: Store) -> set[int]:
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id FROM zendesk_audit_logs WHERE account = 'acme'"))
        return {int(row[0]) for row in rows}


def heal_and_rerun(server_api: Api, account: AccountSettings, store: Store) -> None:
    """The server heals; the next run must leave the table with every record it holds."""
    server_api.mode = HEALTHY
    again = run(account, store)
    assert again.status == "success"
    assert stored_ids(store) == {r["id"] for r in server_api.records}


# -- the order and the window: a checkpoint only moves over what the answer proves ----------
@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("newest-first-then-500s", "out of order"),
        ("dated-2099-then-500s", "outside the requested window"),
    ],
)
def test_a_page_that_proves_nothing_moves_no_checkpoint(
    db_url: str,
    api: tuple[Api, str],
    mode: str,
    says: str,
    workers: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sort ignored (newest first), or one record dated 2099 on the first page, then
    500s until the budget ends: before, the first page moved the watermark to the
    window's end and a healthy rerun left 400 of 500 records missing for good."""
    server_api, url = api
    server_api.mode = mode
    account = sim_account(url, page_size=PAGE, retry_budget=20, workers=workers)
    store = fresh_store(db_url)
    with pytest.raises(RetryBudgetExhausted) as raised:
        run(account, store)
    assert raised.value.exit_code == ExitCode.UPSTREAM
    assert "\n" not in str(raised.value)
    # the page was refused as corrupt (then retried into the 500s), never stored
    assert any(says in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert stored_ids(store) == set()
    assert store.watermark("acme") is None
    heal_and_rerun(server_api, account, store)


# -- the next link's query is the server's word, not ours -----------------------------------
@pytest.mark.parametrize("mode", ["link-later-start", "link-no-sort", "link-other-filter"])
def test_a_next_link_that_changes_the_query_is_never_followed(
    db_url: str, api: tuple[Api, str], mode: str
) -> None:
    """Before, a link on our own origin was followed with whatever query it carried: a
    created_at start 40 minutes later, no sort or another filter lost records in a run
    that reported success."""
    server_api, url = api
    server_api.mode = mode
    account = sim_account(url, page_size=PAGE, retry_budget=20, workers=1)
    store = fresh_store(db_url)
    with pytest.raises(RetryBudgetExhausted, match=r"links\.next would change the query"):
        run(account, store)
    # only our own query was ever sent: the first page's, retried
    assert {seen.path for seen in server_api.seen} == {server_api.seen[0].path}
    heal_and_rerun(server_api, account, store)


# -- progress -------------------------------------------------------------------------------
def test_nonce_cursors_over_repeating_pages_end_the_run(db_url: str) -> None:
    """Three pages of one second's records, then back to the first with a fresh cursor
    string each time: before, the run went on until killed (here: 300 requests). A page
    the query has read already is refused (retried, and within the budget exit 4)."""
    server_api = Api(history(50, burst=6), mode="nonce-loop")
    with LoopbackServer(server_api.respond) as server:
        account = sim_account(server.url, page_size=2, retry_budget=20, workers=1)
        store = fresh_store(db_url)
        with pytest.raises(RetryBudgetExhausted, match="read on an earlier page") as raised:
            run(account, store)
        assert raised.value.exit_code == ExitCode.UPSTREAM
        assert server_api.requests < 40
        heal_and_rerun(server_api, account, store)


# -- rate-limit headers are bounded by what Zendesk documents -------------------------------
def test_a_reset_of_an_hour_waits_a_window_at_most_and_says_so(
    sqlite_url: str, api: tuple[Api, str], caplog: pytest.LogCaptureFixture
) -> None:
    """``X-Rate-Limit-Remaining: 0`` with ``ratelimit-reset: 3600``: before, each request
    waited an hour, past a 20 s retry budget, and nothing was logged."""
    server_api, url = api
    server_api.headers = {
        "X-Rate-Limit": "700",
        "X-Rate-Limit-Remaining": "0",
        "ratelimit-reset": "3600",
    }
    account = sim_account(url, page_size=PAGE, retry_budget=20, workers=1)
    store = fresh_store(sqlite_url)
    clock = FakeTime()
    with caplog.at_level(logging.INFO, logger="etl.zendesk.ratelimit"):
        summary = run(account, store, clock)
    assert summary.status == "success"
    assert len(stored_ids(store)) == RECORDS
    assert clock.sleeps and max(clock.sleeps) <= 20  # the budget, below the minute's window
    assert any("waiting" in r.getMessage() and "rate limit" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_an_x_rate_limit_of_one_does_not_slow_the_job_to_a_request_a_minute(
    sqlite_url: str, api: tuple[Api, str]
) -> None:
    """No plan's limit is below 200 a minute: ``X-Rate-Limit: 1`` is not believed."""
    server_api, url = api
    server_api.headers = {
        "X-Rate-Limit": "1",
        "X-Rate-Limit-Remaining": "650",
        "ratelimit-reset": "30",
    }
    account = sim_account(url, page_size=PAGE, requests_per_minute=400, workers=1)
    store = fresh_store(sqlite_url)
    clock = FakeTime()
    summary = run(account, store, clock)
    assert summary.status == "success"
    assert len(stored_ids(store)) == RECORDS
    assert sum(clock.sleeps) < 10  # 6 requests at the budget's pace; before, 4 minutes


# -- max_run_time: a run ends by itself at a commit, exit 0, and the next resumes ----------
class Ticking:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
def test_max_run_time_stops_at_a_commit_exits_0_and_the_next_run_resumes(
    db_url: str, api: tuple[Api, str], workers: int
) -> None:
    server_api, url = api
    account = sim_account(url, page_size=PAGE, workers=workers)
    account = replace_sync(account, max_run_time=timedelta(seconds=10))
    store = fresh_store(db_url)
    summaries: list[RunSummary] = []
    hooks = RunHooks(clock=Ticking(4.0), report=summaries.append)
    result = run_accounts(store, [account], hooks=hooks)
    assert result.exit_code == ExitCode.OK
    (summary,) = summaries
    stored = stored_ids(store)
    if summary.status == "success":  # the backfill's writer had every page by its first look
        assert workers > 1 and stored == {r["id"] for r in server_api.records}
        return  # at the clock (seen on MariaDB): finished, so not cut short
    assert summary.status == "interrupted"
    assert summary.error is not None and "max_run_time" in summary.error
    # Sequentially it stops after a whole page, unfinished; the backfill's writer may have every
    # page in hand by its first look at the clock (then it still stops, unfinished).
    assert (0 < len(stored) < RECORDS and len(stored) % PAGE == 0) if workers == 1 else stored
    (status,) = store.account_status("acme")
    assert status.last_run is not None and status.last_run.status == "interrupted"
    watermark = store.watermark("acme")
    if watermark is not None:  # every record up to the watermark is stored
        older = {r["id"] for r in server_api.records if parse_zendesk_time(r["created_at"])
                 <= watermark}  # fmt: skip
        assert older <= stored
    again = run(replace_sync(account, max_run_time=None), store)
    assert again.status == "success"
    assert stored_ids(store) == {r["id"] for r in server_api.records}


def replace_sync(account: AccountSettings, **changes: Any) -> AccountSettings:
    from dataclasses import replace

    return replace(account, sync=replace(account.sync, **changes))
