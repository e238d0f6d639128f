"""End-to-end sync against the simulated Zendesk, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from parts.simulators import Simulators
from support import (
    FETCH_BOUND,
    SIM_API_TOKEN,
    SIM_EMAIL,
    FakeTime,
    assert_table_matches,
    audit_record,
    fake_time_client,
    fresh_store,
    parse_zendesk_time,
    recent,
    sim_account,
    stored_rows,
)

from etl.common.errors import AuthError, InterruptedRun
from etl.common.secret import Secret
from etl.common.settings import AccountSettings, Credentials
from etl.storage.store import Store
from etl.sync.account import resync_account, sync_account
from etl.sync.run import RunHooks, RunSummary
from zendesk_sim import SimAuth, SimulatedZendesk, generate_records


@pytest.fixture
def history() -> Any:
    """2,000 records over two days, ending 30 minutes ago, dense and bursty."""
    end = recent(30)
    return generate_records(2000, start=end - timedelta(days=2), end=end, seed=3)


@pytest.fixture
def sim(history: Any, make_sim: Simulators) -> SimulatedZendesk:
    return make_sim(history)


def run(
    account: AccountSettings, store: Store, *, now: datetime | None = None, **hooks: Any
) -> RunSummary:
    with fake_time_client(account) as client:
        if now is None:
            return sync_account(account, client, store, hooks=RunHooks(**hooks))
        return sync_account(account, client, store, now=lambda: now, hooks=RunHooks(**hooks))


def created_at_filters(sim: SimulatedZendesk) -> list[list[str]]:
    return [
        r.query["filter[created_at][]"]
        for r in sim.requests
        if r.path.startswith("/api/v2/audit_logs") and "filter[created_at][]" in r.query
    ]


@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
def test_first_sync_stores_every_record_exactly_once(
    db_url: str, sim: SimulatedZendesk, workers: int
) -> None:
    account = sim_account(sim.url, workers=workers)
    store = fresh_store(db_url)
    summary = run(account, store)
    assert summary.status == "success"
    assert summary.inserted == 2000
    assert summary.updated == 0
    if workers == 1:  # the 20th page is full: its cursor confirms the end (an empty 21st)
        assert summary.pages == 21
    else:  # each slice ends on a partial page, and a split slice reads one page past its end
        assert 20 <= summary.pages <= 30
    assert summary.requests == summary.pages
    assert_table_matches(db_url, sim.visible_records())
    assert summary.window is not None
    assert store.watermark("acme") == summary.window.end
    (status,) = store.account_status("acme")
    assert status.rows == 2000
    assert status.last_run is not None and status.last_run.status == "success"
    assert status.last_run.rows_inserted == 2000


def test_incremental_run_picks_up_new_and_late_records(db_url: str, sim: SimulatedZendesk) -> None:
    account = sim_account(sim.url)
    store = fresh_store(db_url)
    first = run(account, store)
    assert first.watermark_after is not None
    new = [audit_record(7_000_000_000_000 + i, recent(6), actor_id=i) for i in range(30)]
    # created before the watermark, visible only now: the overlap must catch them
    late_time = first.watermark_after - timedelta(minutes=4)
    late = [audit_record(7_100_000_000_000 + i, late_time) for i in range(5)]
    sim.add_records(new + late)
    second = run(account, store)
    assert (second.inserted, second.updated) == (35, 0)
    assert_table_matches(db_url, sim.visible_records())
    # re-reading an unchanged record rewrites nothing
    third = run(account, store)
    assert (third.inserted, third.updated) == (0, 0)


def test_a_changed_record_is_updated_in_place(db_url: str) -> None:
    record = audit_record(5_000_000_000_001, recent(8), change_description="before")
    with SimulatedZendesk([record]) as sim:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        run(account, store)
        sim.add_records([{**record, "change_description": "after", "new_field": [1, 2]}])
        summary = run(account, store)
        assert (summary.inserted, summary.updated) == (0, 1)
        assert_table_matches(db_url, sim.visible_records())
        (row,) = stored_rows(db_url)
        assert row["change_description"] == "after"


def test_pages_stored_already_above_the_watermark_still_move_it_page_by_page(
    db_url: str,
) -> None:
    """A page re-read unchanged commits nothing only where the watermark is past it: rows
    a resync stored ahead of it are checkpointed as they are read, so a run stopped after
    its first page resumes from there."""
    times = [recent(30) + timedelta(seconds=i) for i in range(250)]
    records = [audit_record(6_100_000_000_000 + i, at) for i, at in enumerate(times)]
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url, workers=1)
        store = fresh_store(db_url)
        with fake_time_client(account) as client:
            resync_account(account, client, store, recent(60))  # stored, no watermark
        assert store.watermark("acme") is None
        stop = threading.Event()
        with pytest.raises(InterruptedRun):
            run(account, store, stop=stop, on_page=lambda summary, position: stop.set())
        watermark = store.watermark("acme")
        assert watermark is not None and times[99] <= watermark < times[100]


def test_nothing_new_costs_one_request(sqlite_url: str, sim: SimulatedZendesk) -> None:
    account = sim_account(sim.url)
    store = fresh_store(sqlite_url)
    run(account, store)
    sim.clear_log()
    summary = run(account, store)
    assert summary.status == "success"
    assert (summary.inserted, summary.updated, summary.pages) == (0, 0, 1)
    assert summary.requests == 1
    assert len(sim.requests) == 1


def test_overlap_costs_one_request_per_hundred_records(sqlite_url: str) -> None:
    moment = recent(8)
    records = [audit_record(6_000_000_000_000 + i, moment) for i in range(250)]
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)
        store = fresh_store(sqlite_url)
        run(account, store)
        sim.clear_log()
        summary = run(account, store)
        assert summary.requests == 3  # 250 records in the overlap: 3 pages of 100
        assert (summary.inserted, summary.updated) == (0, 0)


@pytest.mark.parametrize("inclusive_start", [True, False], ids=["start-in", "start-ex"])
@pytest.mark.parametrize("inclusive_end", [True, False], ids=["end-in", "end-ex"])
def test_same_second_records_across_page_and_run_boundaries(
    sqlite_url: str, inclusive_start: bool, inclusive_end: bool
) -> None:
    """Bounds' inclusiveness is undocumented: every record arrives either way."""
    second = recent(20)
    batch = [audit_record(4_000_000_000_000 + i, second) for i in range(250)]
    with SimulatedZendesk(
        batch, inclusive_start=inclusive_start, inclusive_end=inclusive_end
    ) as sim:
        account = sim_account(sim.url)
        store = fresh_store(sqlite_url)
        # the first run's window ends exactly on that second
        first = run(account, store, now=second + account.sync.lag)
        assert first.window is not None and first.window.end == second
        # more records of that very second appear after the first run, and later ones too
        sim.add_records(
            [audit_record(4_100_000_000_000 + i, second) for i in range(150)]
            + [audit_record(4_200_000_000_000 + i, second + timedelta(seconds=1)) for i in range(3)]
        )
        run(account, store)
        assert_table_matches(sqlite_url, sim.visible_records())


def test_interrupted_run_resumes_from_its_last_committed_page(
    db_url: str, sim: SimulatedZendesk
) -> None:
    """The sequential path; tests/test_backfill.py has the parallel one."""
    account = sim_account(sim.url, workers=1)
    store = fresh_store(db_url)
    stop = threading.Event()
    pages: list[int] = []

    def stop_after_three_pages(summary: RunSummary) -> None:
        pages.append(summary.pages)

    original_write = store.write_page

    def write_then_maybe_stop(*args: Any, **kwargs: Any) -> Any:
        result = original_write(*args, **kwargs)
        if len(pages) == 0 and store.watermark("acme") is not None:
            stop.set()
        return result

    store.write_page = write_then_maybe_stop  # type: ignore[method-assign]
    with pytest.raises(InterruptedRun):
        run(account, store, stop=stop, report=stop_after_three_pages)
    assert pages == [1]
    resumed_from = store.watermark("acme")
    assert resumed_from is not None
    (status,) = store.account_status("acme")
    assert status.rows == 100
    assert status.last_run is not None and status.last_run.status == "interrupted"

    store.write_page = original_write  # type: ignore[method-assign]
    sim.clear_log()
    summary = run(account, store)
    assert summary.status == "success"
    # the second run started at the checkpoint (minus overlap), not at the beginning
    first_query = created_at_filters(sim)[0]
    expected_start = resumed_from - account.sync.overlap - timedelta(seconds=1)
    assert parse_zendesk_time(first_query[0]) == expected_start
    assert_table_matches(db_url, sim.visible_records())


def test_filters_are_passed_through(sqlite_url: str, sim: SimulatedZendesk, history: Any) -> None:
    wanted = {"user", "rule"}
    account = sim_account(sim.url, filters={"source_type": tuple(sorted(wanted))})
    store = fresh_store(sqlite_url)
    run(account, store)
    expected = [r for r in history if r["source_type"] in wanted]
    assert 0 < len(expected) < len(history)
    assert_table_matches(sqlite_url, expected)


def test_start_time_bounds_the_first_run(sqlite_url: str, sim: SimulatedZendesk) -> None:
    records = sim.visible_records()
    start = parse_zendesk_time(records[len(records) // 2]["created_at"])
    account = sim_account(sim.url, start_time=start)
    store = fresh_store(sqlite_url)
    run(account, store)
    assert_table_matches(
        sqlite_url, [r for r in records if parse_zendesk_time(r["created_at"]) >= start]
    )


@pytest.mark.parametrize(
    "credentials",
    [
        Credentials(client_id="sim-client", client_secret=Secret("sim-client-secret")),
        Credentials(oauth_token=Secret("sim-oauth-token")),
        Credentials(email=SIM_EMAIL, api_token=Secret(SIM_API_TOKEN)),
        Credentials(email=SIM_EMAIL, password=Secret("sim-password")),
    ],
    ids=["client-credentials", "oauth-token", "api-token", "password"],
)
def test_every_auth_method_syncs(
    sqlite_url: str, sim: SimulatedZendesk, credentials: Credentials
) -> None:
    account = sim_account(sim.url, credentials=credentials)
    store = fresh_store(sqlite_url)
    assert run(account, store).inserted == 2000


@pytest.mark.parametrize(
    ("credentials", "auth", "message"),
    [
        (Credentials(oauth_token=Secret("wrong-token")), SimAuth(), "401"),
        (Credentials(oauth_token=Secret("sim-oauth-token")), SimAuth(admin=False), "Enterprise"),
        (
            Credentials(client_id="sim-client", client_secret=Secret("wrong-secret")),
            SimAuth(),
            "client",
        ),
    ],
    ids=["bad-token", "not-admin", "bad-client-secret"],
)
def test_auth_failures_stop_the_run_and_are_recorded(
    db_url: str, credentials: Credentials, auth: SimAuth, message: str
) -> None:
    with SimulatedZendesk([audit_record(1, recent(20))], auth=auth) as sim:
        account = sim_account(sim.url, credentials=credentials)
        store = fresh_store(db_url)
        with pytest.raises(AuthError) as err:
            run(account, store)
        assert message in str(err.value)
        assert "wrong-" not in str(err.value)
        (status,) = store.account_status("acme")
        assert status.last_run is not None and status.last_run.status == "failed"
        assert status.last_failure_error == str(err.value)
        assert status.watermark is None


@pytest.mark.paced  # about 429s / Retry-After: the headers say Zendesk's 700
def test_a_retried_page_counts_its_wait(sqlite_url: str, sim: SimulatedZendesk) -> None:
    from zendesk_sim import Fault

    sim.inject(Fault("status", status=429, retry_after=7, skip=3))
    account = sim_account(sim.url)
    store = fresh_store(sqlite_url)
    fake = FakeTime()
    with fake_time_client(account, fake) as client:
        summary = sync_account(account, client, store)
    assert summary.rate_limited == 1
    assert 7 in fake.sleeps
    assert_table_matches(sqlite_url, sim.visible_records())


def test_a_corrupt_answer_is_counted_in_the_summary(sqlite_url: str, sim: SimulatedZendesk) -> None:
    from zendesk_sim import Fault

    sim.inject(Fault("truncate", skip=2), Fault("html", status=200, skip=3))
    account = sim_account(sim.url, workers=1)
    summary = run(account, fresh_store(sqlite_url))
    assert summary.status == "success"
    assert summary.corrupt == 2  # each retried, then read whole
    assert summary.requests == summary.pages + 2
    assert "corrupt=2 " in summary.line()
    assert summary.fields()["corrupt_responses"] == 2
    assert_table_matches(sqlite_url, sim.visible_records())


def test_run_summary_line_has_every_figure(sqlite_url: str, sim: SimulatedZendesk) -> None:
    account = sim_account(sim.url, workers=1)
    summary = run(account, fresh_store(sqlite_url))
    line = summary.line()
    # 2,000 records: the 20th page is full, so its cursor confirms the end (an empty 21st)
    parts = "account=acme status=success pages=21 inserted=2000 updated=0 rejected=0 requests=21"
    for part in [*parts.split(), "429s=0", "corrupt=0", "watermark=none->", "duration="]:
        assert part in line
    assert "\n" not in line


def test_window_is_lag_behind_now_and_overlaps_the_watermark() -> None:
    from etl.sync.window import plan_window

    account = sim_account("http://127.0.0.1:1", lag=timedelta(minutes=5))
    now = datetime(2026, 1, 1, 12, 0, 30, 500000, tzinfo=UTC)
    first = plan_window(None, account, now)
    assert first.end == datetime(2026, 1, 1, 11, 55, 30, tzinfo=UTC)
    assert first.start == datetime(2007, 1, 1, tzinfo=UTC)
    later = plan_window(first.end, account, now + timedelta(minutes=5))
    assert later.start == first.end - timedelta(minutes=10, seconds=1)
    assert later.end == first.end + timedelta(minutes=5)


def test_twenty_thousand_records_arrive_exactly_once_with_every_field(db_url: str) -> None:
    end = recent(30)
    records = generate_records(20_000, start=end - timedelta(days=30), end=end, seed=20)
    with SimulatedZendesk(records, latency=FETCH_BOUND) as sim:  # read in parallel slices
        store = fresh_store(db_url)
        summary = run(sim_account(sim.url), store)
        assert summary.inserted == 20_000
        # Read in slices, a partial page each, or (writer-bound on a busy machine) in one;
        # a request timed out under load is retried: little waste either way.
        assert 200 <= summary.pages <= summary.requests <= 220
        assert_table_matches(db_url, sim.iter_visible_records())
