"""One account's run: plan the window, read its pages, store each page with its checkpoint.

``read_window`` reads any log (``etl.sync.logs.Stream``): the audit log's sync and resync
are here, the other logs' in ``etl.sync.streams``; a long window goes to the parallel
backfill (``etl.sync.backfill``) whichever log it is.

See docs/ARCHITECTURE.md, "The watermark", for why the window is what it is. The
run row in the database is opened first and closed last, whatever happens, so
``status`` can always tell what the last run did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

from etl.common.clock import utc_now
from etl.common.errors import EtlError, ForbiddenError, InterruptedRun, OutOfTime
from etl.common.settings import AccountSettings
from etl.storage.store import Store, WriteResult
from etl.storage.streams import LogState
from etl.sync.logs import AUDIT_LOGS, Stream
from etl.sync.run import Run, RunHooks, RunSummary, ended_by
from etl.sync.scope import settle as settle_scope
from etl.sync.window import (
    UNREAD,
    Known,
    Window,
    by_zendesk_time,
    latest_end,
    plan_window,
    repair_future_watermark,
    resync_window,
    zendesk_now,
)
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import Page, iter_pages

log = logging.getLogger(__name__)


def sync_account(
    account: AccountSettings,
    client: ZendeskClient,
    store: Store,
    *,
    now: Callable[[], datetime] = utc_now,
    hooks: RunHooks = RunHooks(),
) -> RunSummary:
    """Bring one account's table up to ``now - lag``. The caller holds the account's lock.

    ``now`` is the host's clock; Zendesk's (``zendesk_now``) bounds it.
    """
    with _summary_on_failure(account, hooks):
        _, watermark = settle_scope(account, store)  # the scope and watermark: one read
        repaired = repair_future_watermark(
            account, store, latest_end(account, client, now()), watermark
        )

    # The watermark as last read, UNREAD once a read may have moved it (we hold the lock:
    # nothing else does). The first plan starts from the one just read unless the repair
    # moved it; the one a plan starts from is its read's "before", not read again.
    known: Known = UNREAD if repaired else watermark

    def plan() -> Window:
        nonlocal known
        if known is UNREAD:
            known = store.watermark(account.name)
        return plan_window(known, account, zendesk_now(client, now()))

    def read(window: Window) -> RunSummary:
        nonlocal known
        before, known = known, UNREAD
        return read_window(
            account, client, store, window, advance=True, hooks=hooks, watermark_before=before
        )

    summary = by_zendesk_time(plan, read, account, client, now)
    # A backfill's slices end where the window planned by the host clock did: never leave
    # the watermark past what Zendesk's clock allows. A run that succeeded read it last.
    after = summary.watermark_after if summary.status == "success" else UNREAD
    if repair_future_watermark(account, store, latest_end(account, client, now()), after):
        summary.watermark_after = store.watermark(account.name)
    return summary


def resync_account(
    account: AccountSettings,
    client: ZendeskClient,
    store: Store,
    since: datetime,
    until: datetime | None = None,
    *,
    now: Callable[[], datetime] = utc_now,
    hooks: RunHooks = RunHooks(),
    stream: Stream = AUDIT_LOGS,
    state: LogState | None = None,
) -> RunSummary:
    """Re-read a past window of ``stream`` (in ``state``: the audit log's, ``store``) and
    upsert it, leaving the watermark where it is.

    The summary's ``inserted + updated`` is how far the stored history differed from
    Zendesk's: zero means it matched.
    """

    def plan() -> Window:
        return resync_window(account, client, now(), since, until)

    def read(window: Window) -> RunSummary:
        return read_window(
            account, client, store, window, advance=False, hooks=hooks, stream=stream, state=state
        )

    return by_zendesk_time(plan, read, account, client, now)


@contextmanager
def _summary_on_failure(
    account: AccountSettings, hooks: RunHooks, summary: RunSummary | None = None
) -> Iterator[None]:
    """Before a run has its row (e.g. SQLite locked while the scope or the run row is
    saved), a failure still ends with the run's summary line."""
    started = hooks.clock()
    try:
        yield
    except EtlError as exc:
        summary = summary or RunSummary(account=account.name)
        summary.status = "interrupted" if isinstance(exc, InterruptedRun) else "failed"
        summary.error, summary.duration = str(exc), hooks.clock() - started
        hooks.report(summary)
        raise


def read_window(
    account: AccountSettings,
    client: ZendeskClient,
    store: Store,
    window: Window,
    *,
    advance: bool,
    hooks: RunHooks,
    stream: Stream = AUDIT_LOGS,
    state: LogState | None = None,
    watermark_before: Known = UNREAD,
) -> RunSummary:
    """Read ``window`` of ``stream``, kept in ``state`` (None: the audit log's, ``store``);
    with ``advance``, each commit moves the watermark. ``watermark_before``: the watermark
    the window was planned from, if the caller read it (else it is read here).

    A short window is read page by page here; a long one (or an unfinished backfill) in
    parallel slices by ``etl.sync.backfill``. A stream that names an add-on is skipped on
    a 403 (a warning, the run ``failed`` with ``skipped: ...``), not failed.
    """
    started, stats_before = hooks.clock(), replace(client.stats)
    summary = RunSummary(account=account.name, window=window, stream=stream.name)
    kind = "sync" if advance else "resync"
    log_state: LogState = store if state is None else state
    with _summary_on_failure(account, hooks, summary):
        if watermark_before is UNREAD:
            watermark_before = log_state.watermark(account.name)
        summary.watermark_before = watermark_before
        run_id = store.start_run(
            account.name, window.start, window.end, summary.watermark_before, kind=kind,
            stream=stream.name,
        )  # fmt: skip
    limit = account.sync.max_run_time if advance else None  # a resync cannot resume
    deadline = started + limit.total_seconds() if limit else None
    run = Run(
        account, client, store, run_id, window, summary, advance, hooks, deadline, stream, state
    )
    try:
        workers = parallel_workers(account, window, log_state, advance)
        after: Known = UNREAD
        if workers:
            from etl.sync.backfill import run_backfill  # threads and queues: only when needed

            run_backfill(run, workers=workers)
        else:
            _read_pages(run)
            if advance:  # by Zendesk's clock, which the first response told
                after = log_state.set_watermark(
                    account.name, min(window.end, latest_end(account, client, utc_now()))
                )
        summary.watermark_after = log_state.watermark(account.name) if after is UNREAD else after
        summary.status = "success"
    except OutOfTime as exc:  # not a failure: what is committed stays, the next run resumes
        summary.status, summary.error = "interrupted", str(exc)
        log.info("account %s: %s", account.name, exc)
    except ForbiddenError as exc:
        if not stream.addon_hint:
            summary.status, summary.error = ended_by(exc)
            raise
        summary.status, summary.error = "failed", f"skipped: {exc}"
        log.warning(
            "account %s: %s skipped: Zendesk answered 403 (%s); turn it off in [sync] streams "
            "if the account will not have it",
            account.name, stream.name, stream.addon_hint,
        )  # fmt: skip
    except (Exception, KeyboardInterrupt) as exc:  # recorded, and not hidden by the recording
        summary.status, summary.error = ended_by(exc)
        raise
    finally:
        # The backfill has added (and closed) its fetchers' own clients.
        summary.add_client_stats(client.stats, stats_before)
        summary.duration = hooks.clock() - started
        if summary.status != "success":
            summary.watermark_after = _safe_watermark(log_state, account.name)
        _close_run(store, run_id, summary)
        hooks.report(summary)
    return summary


def parallel_workers(
    account: AccountSettings, window: Window, store: LogState, advance: bool
) -> int:
    """How many fetchers read ``window`` in parallel; 0 means sequentially, here.

    A sync always finishes a backfill plan left unfinished, whatever its window.
    """
    if advance and store.slices(account.name):
        return max(1, account.sync.workers)
    if account.sync.workers > 1 and window.end - window.start > account.sync.parallel_after:
        return account.sync.workers
    return 0


def _read_pages(run: Run) -> None:
    """The sequential read: one cursor, each page committed with its checkpoint."""
    account, stream = run.account, run.stream
    params = stream.query(run.window.start, run.window.end, account)
    for page in iter_pages(run.client, params, stream.api):
        rows, rejects = stream.split(page.records, account.name, utc_now())
        position = page_watermark(page, run.window)
        checkpoint = position if run.advance else None
        if _nothing_to_write(run, rows, rejects, checkpoint):
            run.summary.unwritten_pages += 1  # the run's row counts it when closed
            result = WriteResult(0, 0, 0)
        else:
            result = run.log.write_page(account.name, run.id, rows, rejects, checkpoint)
        run.committed(1, len(page.records), result, position)
        if run.hooks.stopping():
            raise InterruptedRun(f"stopped by a signal after committing page {page.number}")
        if run.out_of_time():
            raise OutOfTime(run.out_of_time_line(f"page {page.number}"))


def _nothing_to_write(
    run: Run, rows: list[dict[str, Any]], rejects: list[Any], checkpoint: datetime | None
) -> bool:
    """A page re-read in the overlap: its records all stored already as they are, no
    reject, and a checkpoint the watermark has passed already (its statement only moves it
    forwards); or an empty page (a run with nothing new) proving no checkpoint. Its
    transaction would write nothing but the run's page count (added when the run's row is
    closed): one read (``LogState.unchanged``) takes its place, or nothing for an empty
    page. A page with anything to write is written as ever, whole."""
    if rejects:
        return False
    before = run.summary.watermark_before
    if checkpoint is not None and (before is None or checkpoint > before):
        return False
    return not rows or run.log.unchanged(run.account.name, rows)


def page_watermark(page: Page, window: Window) -> datetime | None:
    """How far this page proves the log read: what the answer proves (``Page.position``:
    every page is in order and inside the window, checked by ``etl.zendesk.pagination``),
    never past the window's end."""
    return None if page.position is None else min(page.position, window.end)


def _safe_watermark(store: LogState, account: str) -> datetime | None:
    try:
        return store.watermark(account)
    except EtlError:
        return None


def _close_run(store: Store, run_id: int, summary: RunSummary) -> None:
    try:
        store.finish_run(
            run_id,
            summary.status,
            watermark_after=summary.watermark_after,
            requests=summary.requests,
            rate_limited=summary.rate_limited,
            error=summary.error,
            add_pages=summary.unwritten_pages,
        )
    except EtlError as exc:  # the database may be what failed; the run's error matters more
        log.warning("could not record the end of run %d: %s", run_id, exc)
