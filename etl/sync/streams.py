"""The runs of the logs besides the audit log: their window and scope, read as the audit
log's are.

A stream (``etl.sync.logs.Stream``) is read by ``etl.sync.account.read_window``, the audit
log's own reading: page by page, each committed with its checkpoint, or for a long window
(a first run's 90 days) the parallel backfill, with its plan kept under the stream's name.
The same rules hold: the window from the stream's own watermark less the overlap to
``now - lag`` by both clocks, the same client (so the account's one rate budget and
retries), the run lock the job holds, rejects, a run row, and a 403 (the access log's
add-on missing) that skips the stream with a warning instead of failing the job. What is
particular to a stream is here: its scope (only ``start_time``), and a first run that
starts as far back as Zendesk keeps the log. See docs/ACCESS_LOGS.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime

from etl.common.clock import format_time, iso, utc_now
from etl.common.settings import AccountSettings
from etl.common.urls import zendesk_host
from etl.storage.streams import StreamStore
from etl.sync import scope
from etl.sync.account import read_window, resync_account
from etl.sync.logs import ACCESS_LOGS as ACCESS_LOGS
from etl.sync.logs import STREAMS as STREAMS
from etl.sync.logs import Stream as Stream
from etl.sync.run import RunHooks, RunSummary
from etl.sync.window import (
    Window,
    by_zendesk_time,
    latest_end,
    oldest_kept,
    plan_window,
    zendesk_now,
)
from etl.zendesk.client import ZendeskClient

log = logging.getLogger(__name__)


def describe_scope(account: AccountSettings) -> str:
    """What a stream's watermark was read with: its start_time (the filters are the audit
    log's)."""
    start = account.sync.start_time
    described = {"host": zendesk_host(account.zendesk.base_url)}
    return json.dumps(
        {**described, "start_time": format_time(start) if start else None}, separators=(",", ":")
    )


def plan(
    stream: Stream, watermark: datetime | None, account: AccountSettings, now: datetime
) -> Window:
    """From the watermark (less the overlap), or from as far back as Zendesk keeps the log,
    to ``now - lag``; never before ``start_time``."""
    if stream.retention is not None and watermark is not None:
        oldest = oldest_kept(now, stream.retention)
        if watermark < oldest:
            log.warning(
                "account %s: %s last read up to %s, older than Zendesk keeps it (%s): what "
                "happened in between is gone; run at least every few days",
                account.name, stream.name, iso(watermark), iso(oldest),
            )  # fmt: skip
    return plan_window(watermark, account, now, stream.retention)


def sync_stream(
    stream: Stream,
    account: AccountSettings,
    client: ZendeskClient,
    state: StreamStore,
    *,
    now: Callable[[], datetime] = utc_now,
    hooks: RunHooks = RunHooks(),
) -> RunSummary:
    """Bring the account's copy of ``stream`` up to ``now - lag``; the caller holds the
    account's lock. A 403 ends the run as skipped (a warning), not as an error."""
    wanted = describe_scope(account)
    exists, recorded = state.scope(account.name)
    if recorded != wanted:
        restart = exists and recorded is not None and not scope.same(recorded, wanted)
        if restart:
            scope.warn_if_moved(account.name, recorded, wanted)
        state.set_scope(account.name, wanted, restart=restart)
    end = latest_end(account, client, now())
    watermark = state.watermark(account.name)
    if watermark is not None and watermark > end:  # a fast host clock set it: go back
        newest = state.newest(account.name, stream.time_field)
        state.set_watermark(account.name, min(newest or end, end), allow_backwards=True)

    def planned() -> Window:
        return plan(stream, state.watermark(account.name), account, zendesk_now(client, now()))

    def read(window: Window) -> RunSummary:
        return read_window(
            account, client, state.store, window, advance=True, hooks=hooks, stream=stream,
            state=state,
        )  # fmt: skip

    return by_zendesk_time(planned, read, account, client, now)


def resync_stream(
    stream: Stream,
    account: AccountSettings,
    client: ZendeskClient,
    state: StreamStore,
    since: datetime,
    until: datetime | None = None,
    *,
    now: Callable[[], datetime] = utc_now,
    hooks: RunHooks = RunHooks(),
) -> RunSummary:
    """Re-read a past window of ``stream`` and upsert it, leaving its watermark where it is
    (``inserted + updated`` says how far the copy differed)."""
    return resync_account(
        account, client, state.store, since, until, now=now, hooks=hooks, stream=stream,
        state=state,
    )  # fmt: skip
