"""One run in progress: what it reads and writes, how it is watched, and its tally.

Both ways of reading a window (the sequential one in ``etl.sync.account``, the parallel one in
``etl.sync.backfill``) count what they commit here, so the figures a run reports, logs and
hands to its hooks are kept one way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from etl.common.clock import iso
from etl.common.errors import EtlError, InterruptedRun, unexpected
from etl.common.settings import AccountSettings
from etl.records.audit import Reject
from etl.storage.store import Store, WriteResult
from etl.storage.streams import LogState
from etl.sync.logs import AUDIT_LOGS, Stream
from etl.sync.window import Window
from etl.zendesk.client import ClientStats, ZendeskClient

log = logging.getLogger(__name__)

# Called after each committed page with the run so far and the created_at reached.
PageHook = Callable[["RunSummary", datetime | None], None]


@dataclass
class RunSummary:
    """What one run read and wrote, for its log line, its row and the metrics."""

    account: str
    status: str = "running"
    window: Window | None = None
    pages: int = 0
    records: int = 0  # as received, before upsert: inserted + updated + unchanged + rejected
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    requests: int = 0
    rate_limited: int = 0
    corrupt: int = 0  # answers refused as corrupt (then retried): a proxy or Zendesk garbling
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    duration: float = 0.0
    error: str | None = None
    # For the progress bar, not reported: whether the run reads parallel slices
    # (etl.sync.backfill), and then its estimate of the pages still to fetch (etl.sync.plan;
    # None while it cannot tell).
    parallel: bool = False
    pages_left: float | None = None
    stream: str = "audit_logs"  # which log the run read (etl.sync.streams)
    # Not reported either: pages re-read unchanged and so not committed (etl.sync.account),
    # which the run's row counts when it is closed.
    unwritten_pages: int = 0

    def count(self, pages: int, records: int, result: WriteResult) -> None:
        """Add what one commit wrote."""
        self.pages += pages
        self.records += records
        self.inserted += result.inserted
        self.updated += result.updated
        self.rejected += result.rejected

    def add_client_stats(self, stats: ClientStats, since: ClientStats | None = None) -> None:
        """Add what one client sent and got back (each fetcher of a backfill has its own);
        ``since``: its figures when the run began (a client the account's logs share)."""
        before = since or ClientStats()
        self.requests += stats.requests - before.requests
        self.rate_limited += stats.rate_limited - before.rate_limited
        self.corrupt += stats.corrupt - before.corrupt

    @property
    def unchanged(self) -> int:
        """Records received that were stored already, as they are: the overlap re-read
        each run, and a record sent twice. Why ``records`` exceeds the rows written."""
        return max(self.records - self.inserted - self.updated - self.rejected, 0)

    def line(self) -> str:
        """The one-line summary every run ends with."""
        window = f"{iso(self.window.start)}..{iso(self.window.end)}" if self.window else "none"
        before, after = iso(self.watermark_before) or "none", iso(self.watermark_after) or "none"
        # The audit log's line is as it always was; another stream's names itself.
        stream = "" if self.stream == "audit_logs" else f" stream={self.stream}"
        text = (
            f"account={self.account}{stream} status={self.status} window={window} "
            f"pages={self.pages} "
            f"records={self.records} inserted={self.inserted} updated={self.updated} "
            f"rejected={self.rejected} unchanged={self.unchanged} "
            f"requests={self.requests} 429s={self.rate_limited} corrupt={self.corrupt} "
            f"watermark={before}->{after} "
            f"duration={self.duration:.2f}s"
        )
        return f"{text} error={self.error}" if self.error else text

    def fields(self) -> dict[str, object]:
        """The same figures as structured fields, for ``--log-format json``."""
        stream = {} if self.stream == "audit_logs" else {"stream": self.stream}
        return {
            "event": "run_finished",
            "account": self.account,
            **stream,
            "status": self.status,
            "window_start": iso(self.window.start) if self.window else None,
            "window_end": iso(self.window.end) if self.window else None,
            "pages": self.pages,
            "records": self.records,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_rejected": self.rejected,
            "records_unchanged": self.unchanged,
            "requests": self.requests,
            "rate_limited": self.rate_limited,
            "corrupt_responses": self.corrupt,
            "watermark_before": iso(self.watermark_before),
            "watermark_after": iso(self.watermark_after),
            "duration_s": round(self.duration, 3),
            "error": self.error,
        }


def _ignore(summary: RunSummary) -> None:
    return None


@dataclass(frozen=True)
class RunHooks:
    """How a run is watched and stopped: the caller's side of a run."""

    stop: threading.Event | None = None  # set: finish the current page, then stop
    clock: Callable[[], float] = time.monotonic
    report: Callable[[RunSummary], None] = _ignore  # every run that started, failed ones too
    on_page: PageHook | None = None

    def stopping(self) -> bool:
        """A stop was asked for (SIGTERM): finish what is committed, then stop."""
        return self.stop is not None and self.stop.is_set()


@dataclass(frozen=True)
class Run:
    """One run in progress: what it reads, where it writes, and its running tally."""

    account: AccountSettings
    client: ZendeskClient
    store: Store
    id: int  # its row in zendesk_audit_sync_runs
    window: Window
    summary: RunSummary
    advance: bool  # a sync moves the watermark page by page; a resync never does
    hooks: RunHooks
    deadline: float | None = None  # on ``hooks.clock``: [sync] max_run_time's end
    stream: Stream = AUDIT_LOGS  # which log it reads
    state: LogState | None = None  # that log's watermark, pages and plan (None: ``store``'s)

    @property
    def log(self) -> LogState:
        """Where the log's pages, watermark and backfill plan go."""
        return self.store if self.state is None else self.state

    def out_of_time(self) -> bool:
        """Past ``[sync] max_run_time``: stop at the next commit (``OutOfTime``)."""
        return self.deadline is not None and self.hooks.clock() >= self.deadline

    def out_of_time_line(self, after: str) -> str:
        """The line of a run stopped by ``[sync] max_run_time`` once ``after`` committed."""
        limit = self.account.sync.max_run_time
        spent = f"{limit.total_seconds():g} s" if limit else "its time"
        return f"stopped after max_run_time ({spent}) once {after} committed; the next run resumes"

    def committed(
        self, pages: int, records: int, result: WriteResult, position: datetime | None
    ) -> None:
        """Take a commit into the tally, log it and tell the page hook; ``position`` is
        the ``created_at`` the run has now read up to."""
        summary = self.summary
        summary.count(pages, records, result)
        log.debug(
            "%d page(s) committed, %d in all: %d records, %d inserted, %d updated, %d rejected",
            pages, summary.pages, records, result.inserted, result.updated, result.rejected,
            extra=page_event(self.account.name, summary.pages, records, result, position),
        )  # fmt: skip
        if self.hooks.on_page is not None:
            self.hooks.on_page(summary, position)


def split_records(
    records: Iterable[Any], account: str, synced_at: datetime
) -> tuple[list[dict[str, Any]], list[Reject]]:
    """An audit-log page's records as storable rows, and the rejects among them."""
    return AUDIT_LOGS.split(records, account, synced_at)


def page_event(
    account: str, page: int, records: int, result: WriteResult, position: datetime | None
) -> dict[str, object]:
    """Structured fields of a committed page, for ``--log-format json``."""
    return {
        "event": "page_committed",
        "account": account,
        "page": page,
        "records": records,
        "rows_inserted": result.inserted,
        "rows_updated": result.updated,
        "rows_rejected": result.rejected,
        "position": iso(position),
    }


def ended_by(exc: BaseException) -> tuple[str, str]:
    """The status and error a run records for what ended it: never a bug's arguments, which
    may hold a header, a credential or a row (``etl.common.errors.unexpected``)."""
    if isinstance(exc, InterruptedRun):
        return "interrupted", str(exc)
    if isinstance(exc, EtlError):
        return "failed", str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted by the user"
    return "failed", f"internal error ({unexpected(exc)})"
