"""The streams an account may copy, and the sequential run of one that is not the audit log.

A ``Stream`` describes a log by parameters (path, list key, time field, filter names,
table, parser), so the same run reads any of them; the audit log keeps its own machinery
(``etl.sync.account``: parallel backfill, resync). ``sync_stream`` reads its window page
by page, each committed with its checkpoint, with the audit log's rules: the window
from the stream's own watermark less the overlap to ``now - lag`` by both clocks, the
same client (so the account's one rate budget and retries), the run lock the job holds,
rejects, a run row, and a 403 (the access log's add-on missing) that skips the stream
with a warning instead of failing the job. See docs/ACCESS_LOGS.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from etl.common.clock import format_time, iso, utc_now
from etl.common.errors import ConfigError, EtlError, ForbiddenError, InterruptedRun
from etl.common.settings import AccountSettings
from etl.records.access import parse_access_record
from etl.records.audit import Reject
from etl.storage.schema import access_logs
from etl.storage.store import Store
from etl.storage.streams import StreamStore
from etl.sync.run import RunHooks, RunSummary, ended_by
from etl.sync.window import Window, by_zendesk_time, latest_end, reread_from, zendesk_now
from etl.zendesk.client import ZendeskClient
from etl.zendesk.stream_pages import StreamQuery, iter_stream_pages

log = logging.getLogger(__name__)

Parser = Callable[[object, str, datetime], "dict[str, Any] | Reject"]


@dataclass(frozen=True)
class Stream:
    name: str  # as in [sync] streams
    path: str
    records_key: str
    time_field: str
    start_param: str
    end_param: str
    table: sa.Table
    parse: Parser
    retention: timedelta  # how far back Zendesk keeps it: where a first run starts
    sort: tuple[str, str] | None = None  # asks for ascending order, if the API takes it
    addon_hint: str = ""


ACCESS_LOGS = Stream(
    name="access_logs",
    path="/api/v2/access_logs",
    records_key="access_logs",
    time_field="timestamp",
    start_param="filter[start]",
    end_param="filter[end]",
    table=access_logs,
    parse=parse_access_record,
    retention=timedelta(days=90),
    sort=("sort", "timestamp"),
    addon_hint="the access log needs Zendesk's Advanced Data Privacy and Protection add-on",
)
STREAMS = {ACCESS_LOGS.name: ACCESS_LOGS}


def describe_scope(account: AccountSettings) -> str:
    """What a stream's watermark was read with: its start_time (the filters are the audit
    log's)."""
    start = account.sync.start_time
    return json.dumps({"start_time": format_time(start) if start else None}, separators=(",", ":"))


def plan(
    stream: Stream, watermark: datetime | None, account: AccountSettings, now: datetime
) -> Window:
    """From the watermark (less the overlap), or from as far back as Zendesk keeps the log,
    to ``now - lag``; never before ``start_time``."""
    end = (now - account.sync.lag).replace(microsecond=0)
    oldest = (now - stream.retention).replace(microsecond=0) + timedelta(seconds=1)
    start = oldest if watermark is None else max(reread_from(watermark, account), oldest)
    if watermark is not None and watermark < oldest:
        log.warning(
            "account %s: %s last read up to %s, older than Zendesk keeps it (%s): what "
            "happened in between is gone; run at least every few days",
            account.name, stream.name, iso(watermark), iso(oldest),
        )  # fmt: skip
    if account.sync.start_time:
        start = max(start, account.sync.start_time)
    return Window(min(start, end), end)


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
        state.set_scope(account.name, wanted, restart=exists and recorded is not None)
    end = latest_end(account, client, now())
    watermark = state.watermark(account.name)
    if watermark is not None and watermark > end:  # a fast host clock set it: go back
        newest = state.newest(account.name, stream.time_field)
        state.set_watermark(account.name, min(newest or end, end), allow_backwards=True)

    def planned() -> Window:
        return plan(stream, state.watermark(account.name), account, zendesk_now(client, now()))

    def read(window: Window) -> RunSummary:
        return _read(stream, account, client, state, window, hooks, advance=True)

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

    def planned() -> Window:
        latest = latest_end(account, client, now())
        end = min(until, latest) if until else latest
        if since >= end:
            raise ConfigError(
                f"nothing to re-read: --since {iso(since)} is not before {iso(end)} "
                "(--until, or now minus lag)"
            )
        return Window(since, end)

    def read(window: Window) -> RunSummary:
        return _read(stream, account, client, state, window, hooks, advance=False)

    return by_zendesk_time(planned, read, account, client, now)


def _read(
    stream: Stream,
    account: AccountSettings,
    client: ZendeskClient,
    state: StreamStore,
    window: Window,
    hooks: RunHooks,
    *,
    advance: bool,
) -> RunSummary:
    """Read ``window`` page by page; with ``advance`` (a sync), each page's commit moves the
    stream's watermark, and the end of the window once read."""
    started = hooks.clock()
    requests, rate_limited = client.stats.requests, client.stats.rate_limited
    summary = RunSummary(account=account.name, window=window, stream=stream.name)
    summary.watermark_before = state.watermark(account.name)
    store = state.store
    kind = "sync" if advance else "resync"
    run_id = store.start_run(
        account.name, window.start, window.end, summary.watermark_before, kind=kind,
        stream=stream.name,
    )  # fmt: skip
    try:
        _read_pages(stream, account, client, state, window, run_id, summary, hooks, advance)
        if advance:  # by Zendesk's clock, which the first response told
            end = min(window.end, latest_end(account, client, utc_now()))
            state.set_watermark(account.name, end)
        summary.status = "success"
    except ForbiddenError as exc:
        summary.status, summary.error = "failed", f"skipped: {exc}"
        log.warning(
            "account %s: %s skipped: Zendesk answered 403 (%s); turn it off in [sync] streams "
            "if the account will not have it",
            account.name, stream.name, stream.addon_hint or "not allowed",
        )  # fmt: skip
    except (Exception, KeyboardInterrupt) as exc:  # recorded, and not hidden by the recording
        summary.status, summary.error = ended_by(exc)
        raise
    finally:
        summary.requests = client.stats.requests - requests
        summary.rate_limited = client.stats.rate_limited - rate_limited
        summary.duration = hooks.clock() - started
        summary.watermark_after = _safe(lambda: state.watermark(account.name))
        _close(store, run_id, summary)
        hooks.report(summary)
    return summary


def _read_pages(
    stream: Stream,
    account: AccountSettings,
    client: ZendeskClient,
    state: StreamStore,
    window: Window,
    run_id: int,
    summary: RunSummary,
    hooks: RunHooks,
    advance: bool,
) -> None:
    params = [
        (stream.start_param, format_time(window.start)),
        (stream.end_param, format_time(window.end)),
        *([stream.sort] if stream.sort else []),
        ("page[size]", str(account.zendesk.page_size)),
    ]
    # The bounds as sent (whole seconds): a watermark with a fraction of a second (times may
    # have them) re-reads from the start of its second, which every record there is in.
    start, end = window.start.replace(microsecond=0), window.end.replace(microsecond=0)
    query = StreamQuery(stream.path, stream.records_key, stream.time_field, params, start, end)
    for page in iter_stream_pages(client, query):
        synced_at = utc_now()
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for raw in page.records:
            parsed = stream.parse(raw, account.name, synced_at)
            if isinstance(parsed, Reject):
                rejects.append(parsed)
            else:
                rows.append(parsed)
        times = [row[stream.time_field] for row in rows]
        position = min(max(times), window.end) if times else None
        checkpoint = position if advance else None
        result = state.write_page(account.name, run_id, rows, rejects, checkpoint)
        summary.count(1, len(page.records), result)
        if hooks.on_page is not None:
            hooks.on_page(summary, position)
        if hooks.stopping():
            raise InterruptedRun(f"stopped by a signal after committing page {page.number}")


def _safe(read: Callable[[], datetime | None]) -> datetime | None:
    try:
        return read()
    except EtlError:
        return None


def _close(store: Store, run_id: int, summary: RunSummary) -> None:
    status = summary.status if summary.status != "running" else "failed"
    try:
        store.finish_run(
            run_id,
            status,
            watermark_after=summary.watermark_after,
            requests=summary.requests,
            rate_limited=summary.rate_limited,
            error=summary.error,
        )
    except EtlError as exc:  # the database may be what failed; the run's error matters more
        log.warning("could not record the end of run %d: %s", run_id, exc)
