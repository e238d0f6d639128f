"""``reconcile``: a period read again from the API and compared with what is stored, by day.

The unfinished days of ``since..until`` (both inclusive, to the second) are read with one
query, oldest first, of one log (a ``Source``: ``AUDIT``, or the access log's, which the
CLI makes from ``etl.sync.streams``) with the job's own client (its retries, rate limit and
quota, and every answer held to its query's promises by the log's paginator,
``etl.zendesk.pagination``: in the window, in order, also across pages); the records are
grouped by UTC day as they stream (``_Run``), so a day without a record costs no request.
Each is turned into the row the store would keep (the log's parser) and hashed as the
ledger hashes it (``etl.records.chain.record_hash`` of the canonical JSON); once a later
day's record arrives or the query ends, the day's stored rows are read in keyset pages and
hashed the same way (``etl.integrity.reconcile_stored``). Ids at Zendesk and not stored
are *missing*, stored and not at Zendesk *extra*, in both with different hashes *differ*.
Only one day's ids and hashes are in memory at a time, whatever the period's size.

Nothing is written to the records tables: each finished day goes to the progress table
(``etl.integrity.reconcile_days``), so a killed reconcile resumes at its first unfinished
day. The audit log's filters apply to both sides."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.common.clock import format_time, utc_now
from etl.common.errors import CorruptResponseError, InterruptedRun
from etl.common.settings import AccountSettings
from etl.common.version import VERSION
from etl.integrity import reconcile_days as progress
from etl.integrity.reconcile_days import DayResult
from etl.integrity.reconcile_stored import SECOND, Covering, StoredScope, last_signed, stored_day
from etl.records.audit import Reject, parse_record
from etl.records.chain import record_hash
from etl.storage.schema.logs import audit_logs
from etl.zendesk.pagination import JsonGetter, audit_log_params, iter_pages
from etl.zendesk.promises import created_at_of

if TYPE_CHECKING:
    from etl.zendesk.client import ClientStats

log = logging.getLogger(__name__)

DAY = timedelta(days=1)


Pages = Callable[[JsonGetter, AccountSettings, datetime, datetime], Iterator[list[Any]]]
Parser = Callable[[object, str, datetime], "dict[str, Any] | Reject"]


@dataclass(frozen=True)
class Source:
    """One log as reconcile reads it: its API pages for a window, what the store makes of
    a record, and the table and time column its rows are in."""

    stream: str
    pages: Pages  # each page's records, checked by the log's own paginator
    parse: Parser
    table: sa.Table
    time_column: str
    filtered: bool = False  # the scope's filters apply (the audit log's)
    ledgered: bool = False  # the ledger numbers its rows: a checkpoint can cover a day
    # A record's time, to the second (None: unusable): which day it is of.
    time_of: Callable[[object], datetime | None] = created_at_of


def audit_pages(
    client: JsonGetter, account: AccountSettings, start: datetime, end: datetime
) -> Iterator[list[Any]]:
    params = audit_log_params(start, end, account.sync.filters, page_size=account.zendesk.page_size)
    for page in iter_pages(client, params):
        yield page.records


AUDIT = Source("audit_logs", audit_pages, parse_record, audit_logs, "created_at", True, True)


@dataclass(frozen=True)
class Period:
    """One account's period to reconcile and the scope it is read under."""

    account: AccountSettings
    since: datetime  # aware UTC, whole seconds; both bounds inclusive
    until: datetime
    scope: Mapping[str, Any]  # for the report: filters, start_time, what the state recorded
    scope_text: str  # the filters and start_time as canonical JSON: days resume under it
    source: Source = AUDIT

    @property
    def key(self) -> str:
        key = progress.period_key(self.since, self.until)
        return key if self.source is AUDIT else f"{self.source.stream}:{key}"

    @property
    def stored(self) -> StoredScope:
        """The stored rows its days are compared with: the scope's filters, if they apply."""
        source, account = self.source, self.account
        filters = account.sync.filters if source.filtered else {}
        return StoredScope(source.table, source.time_column, account.name, filters)


@dataclass
class AccountReconcile:
    account: str
    stream: str
    since: str
    until: str
    scope: Mapping[str, Any]
    days: list[DayResult] = field(default_factory=list)
    resumed: int = 0  # days taken from an earlier, unfinished reconcile of the period
    requests: int = 0  # API requests this run made

    @property
    def matches(self) -> bool:
        return all(day.matches for day in self.days)

    def totals(self) -> dict[str, int]:
        days = self.days
        return {
            "days": len(days),
            "days_differing": sum(not d.matches for d in days),
            "at_zendesk": sum(d.at_zendesk for d in days),
            "stored": sum(d.stored for d in days),
            "missing": sum(len(d.missing) for d in days),
            "extra": sum(len(d.extra) for d in days),
            "differ": sum(len(d.differ) for d in days),
            "rejected": sum(d.rejected for d in days),
        }

    def summary(self) -> str:
        t = self.totals()
        verdict = "complete" if self.matches else "DIFFERS"
        resumed = f" ({self.resumed} from an earlier run)" if self.resumed else ""
        return (
            f"account {self.account} {self.stream} {self.since}..{self.until}: {verdict}: "
            f"{t['days']} days{resumed}, {t['days_differing']} differing; "
            f"{t['at_zendesk']} at Zendesk, {t['stored']} stored, {t['missing']} missing, "
            f"{t['extra']} extra, {t['differ']} differ; {self.requests} API requests"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "account": self.account, "stream": self.stream,
            "since": self.since, "until": self.until,
            "scope": dict(self.scope), "matches": self.matches, "totals": self.totals(),
            "days_resumed": self.resumed, "requests": self.requests,
            "days": [day.fields() for day in self.days], "summary": self.summary(),
        }  # fmt: skip


def day_spans(since: datetime, until: datetime) -> Iterator[tuple[str, datetime, datetime]]:
    """Each UTC day of ``since..until``: its date and its part of the period, inclusive."""
    midnight = since.replace(hour=0, minute=0, second=0, microsecond=0)
    while midnight <= until:
        yield midnight.date().isoformat(), max(since, midnight), min(until, midnight + DAY - SECOND)
        midnight += DAY


def reconcile_account(
    engine: Engine,
    client: JsonGetter,
    period: Period,
    stats: ClientStats,
    *,
    stop: threading.Event | None = None,
    now: Callable[[], datetime] = utc_now,
) -> AccountReconcile:
    """Compare each day of ``period``, resuming from the days an earlier, unfinished run
    of the same period finished; ``stats`` are the client's (its requests are counted).
    The days stay saved until the caller has given the report
    (``etl.integrity.reconcile_days.forget``)."""
    name = period.account.name
    report = AccountReconcile(name, period.source.stream, format_time(period.since),
                              format_time(period.until), period.scope)  # fmt: skip
    done = progress.finished_days(engine, name, period.key, period.scope_text)
    before = stats.requests
    covering = last_signed(engine, name) if period.source.ledgered else None
    spans = list(day_spans(period.since, period.until))  # dates and bounds only, no ids
    first = 0
    while first < len(spans):
        if spans[first][0] in done:
            report.days.append(done[spans[first][0]])
            report.resumed += 1
            first += 1
            continue
        last = first  # the unfinished days up to the next finished one: one query
        while last < len(spans) and spans[last][0] not in done:
            last += 1
        run = _Run(engine, period, stats, covering, report, stop, now)
        run.read(client, spans[first:last])
        first = last
    report.requests = stats.requests - before
    return report


class _Run:
    """Consecutive unfinished days read with one query, ascending: the records are grouped
    by day as they stream, so a day without a record costs no request. A day is finished
    (compared, saved) only once a record of a later day arrives or the query ends: the
    paginator refuses, before yielding it, a page that lies outside the window or goes back
    in time, also across pages, so after a later day's record none of an earlier day can
    come; records of one second split across pages stay in their open day."""

    def __init__(self, engine: Engine, period: Period, stats: ClientStats,
                 covering: Covering | None, report: AccountReconcile,
                 stop: threading.Event | None, now: Callable[[], datetime]) -> None:  # fmt: skip
        self.engine, self.period, self.stats, self.covering = engine, period, stats, covering
        self.report, self.stop, self.now = report, stop, now
        self.mark = stats.requests  # the requests charged to a day so far
        self.result = DayResult("", "", "")  # the open day's, and its records' hashes
        self.hashes: dict[Any, bytes] = {}
        self.start = self.end = period.since

    def read(self, client: JsonGetter, spans: list[tuple[str, datetime, datetime]]) -> None:
        account, source = self.period.account, self.period.source
        days = iter(spans)
        self._open(next(days))
        synced_at = self.now()  # the parser needs one; it is no part of the hash
        for records in source.pages(client, account, spans[0][1], spans[-1][2]):
            charged = False
            for raw in records:
                moment = source.time_of(raw)
                while moment is not None and moment > self.end:
                    self._finish()
                    self._open(_next_day(days, moment))
                if moment is not None and moment < self.start:  # the paginator forbids it
                    raise CorruptResponseError(
                        f"{source.stream}: a record of {format_time(moment)} after one of "
                        f"{self.result.day} (not ascending); the day is not marked read"
                    )
                if not charged:  # the page's request: the day its first record is of
                    self._charge()
                    charged = True
                # Undated records (rejects to be) count in the day open when they come.
                row = source.parse(raw, account.name, synced_at)
                if isinstance(row, Reject):
                    self.result.rejected += 1
                else:  # a record sent twice counts once, its last version, as stored
                    self.hashes[row["id"]] = record_hash(row["raw"])
            if not charged:
                self._charge()
        self._finish()  # the query ended: this day and the rest had nothing more
        for span in days:
            self._open(span)
            self._finish()

    def _open(self, span: tuple[str, datetime, datetime]) -> None:
        day, self.start, self.end = span
        if self.stop is not None and self.stop.is_set():
            raise InterruptedRun(f"stopped by a signal before {day}; the days finished are kept")
        self.result = DayResult(day, format_time(self.start), format_time(self.end))
        self.hashes = {}

    def _charge(self) -> None:
        self.result.requests += self.stats.requests - self.mark
        self.mark = self.stats.requests

    def _finish(self) -> None:
        result, name, key = self.result, self.period.account.name, self.period.key
        result.at_zendesk = len(self.hashes)
        _compare(self.engine, self.period, self.start, self.end, self.hashes, result,
                 self.covering)  # fmt: skip
        result.checked_at, result.version = format_time(self.now()), VERSION
        progress.save_day(self.engine, name, key, self.period.scope_text, result, self.now())
        self.report.days.append(result)
        log.info("account %s %s: %s", name, self.period.source.stream, result.line())


def _next_day(
    days: Iterator[tuple[str, datetime, datetime]], moment: datetime
) -> tuple[str, datetime, datetime]:
    span = next(days, None)
    if span is None:  # the paginator holds every record to the query's window
        raise CorruptResponseError(f"a record of {format_time(moment)} after the period's end")
    return span


def _compare(
    engine: Engine,
    period: Period,
    start: datetime,
    end: datetime,
    theirs: dict[Any, bytes],
    result: DayResult,
    covering: Covering | None,
) -> None:
    """The day's stored rows against ``theirs``; fills the result's ids and checkpoint."""
    stored = unnumbered = 0
    newest_seq: int | None = None
    extra: list[Any] = []
    differ: list[Any] = []
    seen: set[Any] = set()
    with engine.connect() as conn:
        for record_id, digest, seq in stored_day(conn, period.stored, start, end):
            stored += 1
            seen.add(record_id)
            if seq is None:
                unnumbered += 1
            elif newest_seq is None or seq > newest_seq:
                newest_seq = seq
            if record_id not in theirs:
                extra.append(record_id)
            elif theirs[record_id] != digest:
                differ.append(record_id)
    if covering is not None:
        result.checkpoint = covering.of_day(newest_seq, unnumbered)
    result.stored = stored
    result.missing = sorted(set(theirs) - seen)
    result.extra, result.differ = sorted(extra), sorted(differ)
