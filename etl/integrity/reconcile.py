"""``reconcile``: a period read again from the API and compared with what is stored, by day.

The unfinished days of ``since..until`` (both inclusive, to the second) are read with one
query, oldest first, of one log (a ``Source``: ``AUDIT``, or the access log's, which the
CLI makes from ``etl.sync.streams``) with the job's own client (its retries, rate limit and
quota, and every answer held to its query's promises by the log's paginator,
``etl.zendesk.pagination``: in the window, in order, also across pages); the records are
grouped by UTC day as they stream (``_Run``), so a day without a record costs no request,
and a stretch of such days costs no statement each either: its stored rows are looked for
with one query and its progress saved with one insert up to each day that has some
(``reconcile_stored.empty_days``).
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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.common.clock import format_time, utc_now
from etl.common.errors import CorruptResponseError, InterruptedRun
from etl.common.settings import AccountSettings
from etl.common.version import VERSION
from etl.integrity import reconcile_days as progress
from etl.integrity.reconcile_days import AccountReconcile, DayResult
from etl.integrity.reconcile_stored import (
    SECOND,
    Covering,
    StoredScope,
    compare_day,
    empty_days,
    last_signed,
)
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
    by day as they stream, so a day without a record costs no request, and the days between
    two records' (or after the last) are finished together (``_empty``). A day is finished
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
        self.twice: set[Any] = set()  # ids the open day was sent with two contents
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
                if moment is not None and moment > self.end:
                    self._finish()
                    self._open(self._empty_until(days, moment))
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
                else:  # a record sent twice counts once, its last version, as stored,
                    # but sent with other content too it differs, whatever is stored
                    digest, known = record_hash(row["raw"]), self.hashes.get(row["id"])
                    if known is not None and known != digest:
                        self.twice.add(row["id"])
                    self.hashes[row["id"]] = digest
            if not charged:
                self._charge()
        self._finish()  # the query ended: this day and the rest had nothing more
        self._empty(list(days))

    def _open(self, span: tuple[str, datetime, datetime]) -> None:
        day, self.start, self.end = span
        self._check_stop(day)
        self.result = DayResult(day, format_time(self.start), format_time(self.end))
        self.hashes, self.twice = {}, set()

    def _charge(self) -> None:
        self.result.requests += self.stats.requests - self.mark
        self.mark = self.stats.requests

    def _check_stop(self, day: str) -> None:
        if self.stop is not None and self.stop.is_set():
            raise InterruptedRun(f"stopped by a signal before {day}; the days finished are kept")

    def _finish(self) -> None:
        with self.engine.connect() as conn:
            compare_day(conn, self.period.stored, (self.start, self.end), self.hashes,
                        self.result, self.covering)  # fmt: skip
        result = self.result  # an id sent twice, unlike: neither version is proven
        twice = self.twice - set(result.missing) - set(result.differ)
        result.differ = sorted([*result.differ, *twice])
        self._save([result])

    def _empty_until(
        self, days: Iterator[tuple[str, datetime, datetime]], moment: datetime
    ) -> tuple[str, datetime, datetime]:
        """Finishes the days before ``moment``'s, which Zendesk has no record of; its span."""
        empty: list[tuple[str, datetime, datetime]] = []
        for span in days:
            if moment <= span[2]:
                self._empty(empty)
                return span
            empty.append(span)
        # The paginator holds every record to the query's window.
        raise CorruptResponseError(f"a record of {format_time(moment)} after the period's end")

    def _empty(self, spans: list[tuple[str, datetime, datetime]]) -> None:
        if not spans:  # the next record's day follows the last one's
            return
        with self.engine.connect() as conn:
            for results in empty_days(conn, self.period.stored, spans, self.covering):
                self._check_stop(results[0].day)
                self._save(results)

    def _save(self, results: list[DayResult]) -> None:
        name, key, stream = self.period.account.name, self.period.key, self.period.source.stream
        checked_at = self.now()
        for result in results:
            result.checked_at, result.version = format_time(checked_at), VERSION
        progress.save_days(self.engine, name, key, self.period.scope_text, results, checked_at)
        self.report.days.extend(results)
        for result in results:
            log.info("account %s %s: %s", name, stream, result.line())
