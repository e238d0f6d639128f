"""The access log's window: 90 days back at first, the overlap after, a gap warned about,
a changed start_time read again. Pure planning, and the scope against a real database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback import Exchange, LoopbackServer
from support import fresh_store, sim_account, with_sync

from etl.common.errors import RequestRejectedError
from etl.storage.streams import StreamStore
from etl.sync.streams import ACCESS_LOGS, describe_scope, plan, sync_stream
from etl.zendesk.client import ZendeskClient
from zendesk_sim import AccessSource, SimulatedZendesk

NOW = datetime(2026, 12, 5, 12, 0, 0, 500_000, tzinfo=UTC)
ACCOUNT = sim_account("http://127.0.0.1:1")  # lag 5 min, overlap 10 min: the defaults


def test_a_first_run_reads_the_90_days_zendesk_keeps() -> None:
    window = plan(ACCESS_LOGS, None, ACCOUNT, NOW)
    assert window.end == datetime(2026, 12, 5, 11, 55, tzinfo=UTC)  # now - lag, whole seconds
    assert window.start == datetime(2026, 9, 6, 12, 0, 1, tzinfo=UTC)  # 90 days, inside


def test_later_runs_start_at_the_watermark_less_the_overlap() -> None:
    watermark = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    window = plan(ACCESS_LOGS, watermark, ACCOUNT, NOW)
    assert window.start == watermark - timedelta(minutes=10, seconds=1)
    started = with_sync(ACCOUNT, start_time=datetime(2026, 12, 5, 11, 30, tzinfo=UTC))
    assert plan(ACCESS_LOGS, watermark, started, NOW).start == started.sync.start_time


def test_a_watermark_older_than_the_retention_is_a_gap_said_aloud(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="etl.sync.streams"):
        window = plan(ACCESS_LOGS, NOW - timedelta(days=120), ACCOUNT, NOW)
    assert window.start == datetime(2026, 9, 6, 12, 0, 1, tzinfo=UTC)
    assert "run at least every few days" in caplog.text


def test_the_stream_state_is_its_own_and_a_restart_drops_only_its_watermark(
    sqlite_url: str,
) -> None:
    store = fresh_store(sqlite_url)
    try:
        state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
        state.set_scope("acme", describe_scope(ACCOUNT), restart=False)
        state.set_watermark("acme", NOW)
        state.set_watermark("acme", NOW - timedelta(days=1))  # never backwards...
        assert state.watermark("acme") == NOW
        store.set_watermark("acme", NOW - timedelta(hours=1))  # the audit log's own
        state.set_scope("acme", '{"start_time":"2026-01-01T00:00:00Z"}', restart=True)
        assert state.watermark("acme") is None  # ...unless the scope changed
        assert store.watermark("acme") == NOW - timedelta(hours=1)
        assert state.scope("acme") == (True, '{"start_time":"2026-01-01T00:00:00Z"}')
    finally:
        store.engine.dispose()


def test_a_streams_status_reads_its_own_state_row_not_the_audit_logs(db_url: str) -> None:
    """One status read serves both logs: each reads the state row its stream names."""
    store = fresh_store(db_url)
    try:
        state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
        store.set_scope("acme", "{}", restart=False)
        store.set_watermark("acme", NOW)
        fresh = state.status("acme")
        assert (fresh.watermark, fresh.scope, fresh.rows, fresh.last_run) == (None, None, 0, None)
        state.set_scope("acme", '{"start_time":null}', restart=False)
        state.set_watermark("acme", NOW - timedelta(hours=1))
        access = state.status("acme")
        assert (access.stream, access.watermark, access.scope) == (
            "access_logs",
            NOW - timedelta(hours=1),
            '{"start_time":null}',
        )
        audit = store.account_status("acme")[0]
        assert (audit.stream, audit.watermark, audit.scope) == ("audit_logs", NOW, "{}")
    finally:
        store.engine.dispose()


def test_times_with_fractions_of_a_second_are_read_again_from_their_second(
    sqlite_url: str,
) -> None:
    """Zendesk does not say whether ``timestamp`` has a fraction, nor how records of one
    second are ordered: a page proves whole seconds only (as the audit log's). A page up
    to 10:00:00.750 checkpoints 10:00:00, so the next window starts at 09:59:59 (overlap
    0): a record at 09:59:59.250 is inside what was asked for, not a corrupt answer."""
    before = {"id": "01A", "timestamp": "2026-12-05T09:59:58.100Z", "user_id": "1"}
    first = {"id": "01B", "timestamp": "2026-12-05T10:00:00.750Z", "user_id": "1"}
    early = {"id": "01C", "timestamp": "2026-12-05T09:59:59.250Z", "user_id": "2"}
    answers = iter(
        [
            (
                200,
                {"access_logs": [before, first], "meta": {"has_more": True, "after_cursor": "c1"}},
            ),
            (400, {"error": "InvalidPaginationParameter"}),  # the run stops after page 1
            (200, {"access_logs": [early, first], "meta": {"has_more": False}}),
        ]
    )
    # A request past these (a wrong window's answer refused and asked again) is refused
    # at once, not left unanswered for the job's retries to give up on.
    extra = (400, {"error": "UnexpectedRequest"})

    def respond(exchange: Exchange) -> None:
        status, body = next(answers, extra)
        exchange.send_json(body, status)

    with LoopbackServer(respond) as server:
        # One reader (a first run's 90 days would be read in parallel slices).
        account = with_sync(sim_account(server.url), overlap=timedelta(0), workers=1)
        store = fresh_store(sqlite_url)
        try:
            state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
            with ZendeskClient(account.zendesk) as client:
                fixed = lambda: datetime(2026, 12, 5, 10, 30, tzinfo=UTC)  # noqa: E731
                with pytest.raises(RequestRejectedError):
                    sync_stream(ACCESS_LOGS, account, client, state, now=fixed)
                # Before the next run asks anything: a wrong watermark fails here, by name.
                assert state.watermark("acme") == datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
                again = sync_stream(ACCESS_LOGS, account, client, state, now=fixed)
        finally:
            store.engine.dispose()
    asked = [parse_qs(urlsplit(seen.path).query) for seen in server.seen]
    assert len(asked) == 3, [seen.path for seen in server.seen]
    assert asked[2]["filter[start]"] == ["2026-12-05T09:59:59Z"]  # the second run's window
    assert again.status == "success" and again.inserted == 1
    assert again.window is not None
    assert again.window.start == datetime(2026, 12, 5, 9, 59, 59, tzinfo=UTC)


def test_an_access_scope_from_before_the_host_is_adopted_and_another_host_read_again(
    db_url: str,
) -> None:
    """The access log's scope names the host too: a scope recorded without it keeps its
    watermark; one naming another host reads the 90 days again."""
    end = datetime.now(UTC) - timedelta(minutes=30)
    source = AccessSource(200, start=end - timedelta(days=2), end=end, seed=3)
    with SimulatedZendesk(access_records=source) as sim:
        account = with_sync(sim_account(sim.url), streams=("audit_logs", "access_logs"))
        store = fresh_store(db_url)
        try:
            state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
            watermark = end - timedelta(hours=1)
            windows = []
            for recorded in ('{"start_time":null}', '{"host":"old.example","start_time":null}'):
                state.set_scope("acme", recorded, restart=False)
                state.set_watermark("acme", watermark, allow_backwards=True)
                with ZendeskClient(account.zendesk) as client:
                    windows.append(sync_stream(ACCESS_LOGS, account, client, state).window)
                assert state.scope("acme") == (True, describe_scope(account))
        finally:
            store.engine.dispose()
    adopted, moved = windows
    assert adopted is not None and adopted.start > watermark - timedelta(hours=1)
    assert moved is not None and moved.start < end - timedelta(days=80)
