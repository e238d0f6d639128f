"""The cursor chain of one query of a stream other than the audit log, with guards.

Undocumented for the access log (shared/reference/access-logs.md): page size, cursor
keys and sort order. So each continuation is built from our own request plus
``meta.after_cursor`` (``links.next`` is never followed: nothing of a proxy's or a
changed API's link decides where credentials go), and each answer is checked inside the
client's retry loop (``get_json(check=...)``); a CorruptResponseError is retried, and
when it persists the run stops with what it committed. An answer is corrupt when:

* it has no list under the stream's key, no ``meta`` object, or ``has_more`` is not a
  boolean, or ``has_more`` is true without an ``after_cursor``;
* a record's time (when it has a readable one: the parser rejects the others) is
  outside the window asked for, or earlier than a record before it in this query
  (pages must be ascending: a checkpoint says "everything before here is stored").

As the audit log's paginator, a cursor seen before in the query, or more than
``MAX_EMPTY_PAGES`` empty pages in a row that claim more, is a PaginationError.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from etl.common.clock import iso
from etl.common.errors import CorruptResponseError, PaginationError
from etl.common.redact import snippet
from etl.records.audit import parse_created_at
from etl.zendesk.pagination import MAX_EMPTY_PAGES, SEEN_MEMORY, JsonGetter, Page

# Bounds are whole seconds: a record in the end's own second (a fraction past it, if times
# have them) belongs to the window.
_END_SLACK = timedelta(seconds=1)


@dataclass(frozen=True)
class StreamQuery:
    path: str  # e.g. /api/v2/access_logs
    records_key: str  # the list's key in the answer, e.g. access_logs
    time_field: str  # each record's time, e.g. timestamp
    params: Sequence[tuple[str, str]]  # the first request's query, without a cursor
    start: datetime  # the window asked for, which every record must be in
    end: datetime


@dataclass(frozen=True)
class _Step:
    records: list[Any]
    has_more: bool
    cursor: str | None
    newest: datetime | None  # the newest readable record time of the page


class _Check:
    """One answer as a page of ``query``, following the records already accepted."""

    def __init__(self, query: StreamQuery, floor: datetime | None, where: str) -> None:
        self.query = query
        self.floor = floor  # the newest time accepted before this page
        self.where = where
        self.step: _Step | None = None

    def __call__(self, body: dict[str, Any]) -> None:
        where, key = self.where, self.query.records_key
        records = body.get(key)
        if not isinstance(records, list):
            keys = ", ".join(sorted(str(k) for k in body)[:8]) or "none"
            raise CorruptResponseError(f"{where}: the answer has no {key} list (keys: {keys})")
        meta = body.get("meta")
        if not isinstance(meta, dict):
            raise CorruptResponseError(f"{where}: the answer's meta is not an object")
        has_more = meta.get("has_more")
        if not isinstance(has_more, bool):
            said = "missing" if "has_more" not in meta else snippet(repr(has_more), 40)
            raise CorruptResponseError(f"{where}: meta.has_more is {said}, not true or false")
        cursor = meta.get("after_cursor") if has_more else None
        cursor = cursor if isinstance(cursor, str) and cursor else None
        if has_more and cursor is None:
            raise CorruptResponseError(
                f"{where}: has_more is true but there is no after_cursor to continue"
            )
        newest = self._check_times(records)
        self.step = _Step(records, has_more, cursor, newest)

    def _check_times(self, records: list[Any]) -> datetime | None:
        query, previous = self.query, self.floor
        for record in records:
            moment = (
                parse_created_at(record.get(query.time_field)) if isinstance(record, dict) else None
            )
            if moment is None:
                continue  # the parser rejects it, with its reason
            if not query.start <= moment < query.end + _END_SLACK:
                raise CorruptResponseError(
                    f"{self.where}: a record at {iso(moment)} is outside the window asked for "
                    f"({iso(query.start)} .. {iso(query.end)})"
                )
            if previous is not None and moment < previous:
                raise CorruptResponseError(
                    f"{self.where}: records are not in ascending {query.time_field} order "
                    f"({iso(moment)} after {iso(previous)})"
                )
            previous = moment
        return previous


def iter_stream_pages(client: JsonGetter, query: StreamQuery) -> Iterator[Page]:
    """Every page of ``query``, lazily, each checked before it is yielded."""
    base = [(k, v) for k, v in query.params if k != "page[after]"]
    params = list(base)
    seen: OrderedDict[str, None] = OrderedDict()  # the last SEEN_MEMORY cursors
    floor: datetime | None = None
    empty_streak = number = 0
    while True:
        where = f"page {number + 1} of {query.path}"
        check = _Check(query, floor, where)
        client.get_json(query.path, params, check=check)
        step = check.step
        assert step is not None  # get_json returns only once the check passed
        number += 1
        floor = step.newest or floor
        yield Page(number=number, records=step.records, has_more=step.has_more)
        if not step.has_more:
            return
        empty_streak = 0 if step.records else empty_streak + 1
        if empty_streak > MAX_EMPTY_PAGES:
            raise PaginationError(
                f"{where}: {empty_streak} empty pages in a row that claim has_more; giving up"
            )
        if step.cursor in seen:
            raise PaginationError(
                f"{where}: Zendesk returned a cursor already seen in this query (a loop); giving up"
            )
        seen[str(step.cursor)] = None
        if len(seen) > SEEN_MEMORY:
            seen.popitem(last=False)
        params = [*base, ("page[after]", str(step.cursor))]
