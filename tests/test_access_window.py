"""The access log's window: 90 days back at first, the overlap after, a gap warned about,
a changed start_time read again. Pure planning, and the scope against a real database."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from support import fresh_store, sim_account, with_sync

from etl.storage.streams import StreamStore
from etl.sync.streams import ACCESS_LOGS, describe_scope, plan

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
