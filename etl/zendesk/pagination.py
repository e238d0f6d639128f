"""The cursor chain of one log query, with guards; nothing about retries or state.

The audit log's and the access log's chains are read alike: ``iter_pages(..., api=)``
takes the log's ``etl.zendesk.promises.LogApi`` (its list key, time field, window and sort
parameters); below, ``audit_logs`` and ``created_at`` stand for them.

``iter_pages`` sends the first request (path + params), then, while
``meta.has_more`` is true, sends **the same request again plus the cursor**
(``page[after]``): continuation is ours, never a query the server hands back. A
``links.next`` on the client's own base URL (``etl.common.urls.link_is_ours``) is read
only for its cursor and checked: a link that would change the path, window, sort,
filters or page size is a corrupt answer. A link elsewhere (a proxy's, naming the real
Zendesk host) is ignored. Pages are yielded one at a time, so memory stays flat however
long the chain.

Each answer is checked inside the client's retry loop (``get_json(check=...)``) by
``read_page``; what it refuses is a CorruptResponseError: retried, and when it persists
the run stops (exit 4) with everything stored so far committed; such a page is never
yielded, so it never moves a checkpoint. A page is refused when:

* it is of the wrong shape: no ``audit_logs`` list, no ``meta`` object, ``has_more``
  missing or not a boolean, ``has_more`` true with no cursor to continue with;
* a record's ``created_at`` lies outside the request's ``filter[created_at]`` bounds
  (both taken as inclusive, to the second);
* its records are not in the request's sort order (ties allowed), **also across pages**:
  a page never starts before the newest ``created_at`` the query has yielded;
* its ``links.next`` is ours but would change the query;
* it holds only records the query read already (at the newest second, where ties are
  allowed): sent in place of the next page, its cursor may pass records never sent.

A page that says it is the last (``has_more`` false) while it holds a whole page (the
page size asked, or more) does not end the chain on that word alone: its ``after_cursor``
is asked once more, and the chain ends only on an answer with fewer records (usually none).
A server that cuts a query short with a false ``has_more`` would otherwise have its window
taken as read (one request more where the records fill the last page exactly). A full last
page without a cursor, or whose cursor was asked already, is refused as corrupt: nothing is
left to ask, and believed, it would lose the rest of the window (Zendesk's last pages keep
their ``after_cursor``).

Records without a usable ``created_at`` are not judged here (they become rejects). So
every page ``iter_pages`` yields is in order and within its request's window, and
``Page.position`` tells how far the query is proven read (see ``Page``). A link that
parsers read differently or that carries user info is an UnsafeLinkError.

Guards that end a chain which does not progress, each a PaginationError (exit 4, not
retried):

* a cursor already seen in this query (the last ``SEEN_MEMORY``);
* more than ``MAX_STALLED_PAGES`` pages in a row that bring nothing new: no record, or
  only undated records already yielded (a cursor with a nonce over repeating pages). In an
  ascending chain "new" means a later ``created_at``, or an id not yet seen at the
  newest one, so only that second's ids are remembered.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from etl.common.errors import ConfigError, CorruptResponseError, PaginationError
from etl.common.redact import redact_url, snippet
from etl.common.settings import FILTER_KEYS
from etl.common.urls import link_is_ours
from etl.zendesk.promises import (
    AFTER,
    AUDIT_LOGS_API,
    LogApi,
    Query,
    check_end,
    check_link,
    check_records,
    check_repeat,
    link_cursor,
)

AUDIT_LOGS_PATH = AUDIT_LOGS_API.path
MAX_PAGE_SIZE = 100
MAX_STALLED_PAGES = 20
MAX_EMPTY_PAGES = MAX_STALLED_PAGES  # the name older callers know
SEEN_MEMORY = 1000
SORTS = ("created_at", "-created_at")

log = logging.getLogger(__name__)


class JsonGetter(Protocol):
    """What ``iter_pages`` needs of a client (``ZendeskClient`` is one)."""

    @property
    def base_url(self) -> str: ...

    def get_json(
        self,
        url: str,
        params: Sequence[tuple[str, str]] | None = None,
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Page:
    """One page of records and what it proves of the window read."""

    number: int  # 1-based within this query
    records: list[Any]  # as decoded; validation is records.py's job
    has_more: bool
    # The created_at up to which this query is proven read (an ascending query only):
    # its newest record so far, once the answer has shown its order (a later created_at
    # after an earlier one) or the chain has ended. None: nothing proven yet (no dated
    # record, or so far all of one second, which a newest-first answer would also give).
    position: datetime | None = None


def audit_log_params(
    start: datetime,
    end: datetime,
    filters: Mapping[str, Sequence[str]],
    sort: str = "created_at",
    page_size: int = 100,
) -> list[tuple[str, str]]:
    """The query of one window: created_at bounds, filters (``[]`` form), sort, page size."""
    if sort not in SORTS:
        raise ConfigError(f"sort must be one of {', '.join(SORTS)}, not {sort!r}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown audit-log filter(s) {', '.join(unknown)}; known: {', '.join(FILTER_KEYS)}"
        )
    params = AUDIT_LOGS_API.window(start, end)
    for name in FILTER_KEYS:
        params += [(f"filter[{name}][]", str(value)) for value in filters.get(name, ())]
    params += [("sort", sort), ("page[size]", str(page_size))]
    return params


def log_params(
    api: LogApi, start: datetime, end: datetime, *, descending: bool = False, page_size: int = 100
) -> list[tuple[str, str]]:
    """The query of one window of a log other than the audit log (no filters)."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ConfigError(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")
    return [*api.window(start, end), api.sort(descending), ("page[size]", str(page_size))]


def _page_size(params: Sequence[tuple[str, str]]) -> int:
    """The page size our query asked for (Zendesk's default, 100, where it is not given)."""
    sizes = [v for k, v in params if k == "page[size]" and v.strip().isdigit()]
    return int(sizes[-1]) if sizes else MAX_PAGE_SIZE


class _Seen:
    """The last ``limit`` keys, in insertion order."""

    def __init__(self, limit: int) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def add(self, key: str) -> bool:
        """Remember ``key``; False if it was already remembered."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._limit:
            self._keys.popitem(last=False)
        return True


@dataclass(frozen=True)
class _Step:
    """A checked answer: its records, and how to go on (None: it was the last page)."""

    records: list[Any]
    has_more: bool
    cursor: str | None  # the after_cursor, if any (a last page may have one too)


def read_page(
    body: dict[str, Any],
    base_url: str,
    where: str,
    query: Query | None = None,
    after: datetime | None = None,
    read: Set[object] = frozenset(),
) -> _Step:
    """``body`` as one page of ``query``; CorruptResponseError if it is not one (see the
    module doc), UnsafeLinkError for a next link that must never be requested. ``after``
    is the furthest created_at (in the query's order) of the pages before this one,
    ``read`` the ids they held at it."""
    key = query.api.records_key if query is not None else AUDIT_LOGS_API.records_key
    records = body.get(key)
    if not isinstance(records, list):
        keys = ", ".join(sorted(str(k) for k in body)[:8]) or "none"
        raise CorruptResponseError(f"{where}: the answer has no {key} list (keys: {keys})")
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise CorruptResponseError(
            f"{where}: the answer's meta is not an object ({type(meta).__name__})"
        )
    has_more = meta.get("has_more")
    if not isinstance(has_more, bool):
        said = "missing" if "has_more" not in meta else f"{snippet(repr(has_more), 40)}"
        raise CorruptResponseError(f"{where}: meta.has_more is {said}, not true or false")
    if query is not None:
        check_records(records, query, after, where)
        check_repeat(records, query, after, read, where)
    links = body.get("links")
    next_link = links.get("next") if isinstance(links, dict) else None
    next_link = next_link if isinstance(next_link, str) and next_link else None
    # Checked even on the last page: a server that rewrites our query is not to be trusted.
    ours = next_link is not None and link_is_ours(next_link, base_url)
    if ours and query is not None and next_link is not None:
        check_link(next_link, base_url, query, where)
    cursor = meta.get("after_cursor")
    cursor = cursor if isinstance(cursor, str) and cursor else None
    if cursor is None and ours and next_link is not None:
        cursor = link_cursor(next_link)
    if not has_more:  # the cursor kept: a full last page is confirmed with it (iter_pages)
        return _Step(records, False, cursor)
    if cursor is None:
        foreign = (
            f" (links.next {redact_url(next_link)} is on another host)"
            if next_link and not ours
            else ""
        )
        raise CorruptResponseError(
            f"{where}: has_more is true but there is no after_cursor to continue{foreign}"
        )
    return _Step(records, True, cursor)


class _PageCheck:
    """``read_page`` and ``check_end`` as a client's ``check``, keeping the last page read."""

    def __init__(
        self, base_url: str, where: str, query: Query, progress: _Progress, asked: _Seen, size: int
    ) -> None:
        self.base_url = base_url
        self.where = where
        self.query = query
        self.after = progress.furthest
        self.read = progress.ids_there
        self.asked = asked
        self.size = size
        self.step: _Step | None = None

    def __call__(self, body: dict[str, Any]) -> None:
        step = read_page(body, self.base_url, self.where, self.query, self.after, self.read)
        confirmable = step.cursor is not None and f"cursor:{step.cursor}" not in self.asked
        check_end(len(step.records), self.size, step.has_more, confirmable, self.where)
        self.step = step


class _Progress:
    """How far a query's pages have gone, to tell a page that brings nothing new."""

    def __init__(self, query: Query) -> None:
        self.query = query
        self.first: datetime | None = None  # the query's first dated record
        self.furthest: datetime | None = None  # the furthest created_at, in query order
        self.ids_there: set[object] = set()  # ids seen at ``furthest``
        self._undated = _Seen(SEEN_MEMORY)  # records without a usable created_at

    def take(self, records: Sequence[Any]) -> bool:
        """Take in a yielded page; True if it brought anything new."""
        new = False
        for record in records:
            moment = self.query.api.time_of(record)
            if moment is None:  # a reject to be: new if not among the last ones seen
                key = record.get("id") if isinstance(record, dict) else record
                new = self._undated.add(snippet(repr(key), 200)) or new
                continue
            if self.first is None:
                self.first = moment
            if self.furthest is None or self.query.before(self.furthest, moment):
                self.furthest, self.ids_there, new = moment, set(), True
            record_id = record.get("id")
            key = record_id if isinstance(record_id, int | str) else None
            if key is not None and key not in self.ids_there:
                self.ids_there.add(key)
                new = True
        return new

    def position(self, has_more: bool) -> datetime | None:
        """How far an ascending query is proven read (``Page.position``)."""
        if self.query.descending or self.furthest is None or self.first is None:
            return None
        return self.furthest if self.furthest > self.first or not has_more else None


def iter_pages(
    client: JsonGetter, params: Sequence[tuple[str, str]], api: LogApi = AUDIT_LOGS_API
) -> Iterator[Page]:
    """Every page of the query ``params`` of ``api``'s log, lazily, in the order Zendesk
    gives them."""
    query = Query.of(api, params)
    path = api.path
    request: list[tuple[str, str]] = list(params)
    size = _page_size(query.params)
    seen = _Seen(SEEN_MEMORY)
    progress = _Progress(query)
    stalled = empty = 0
    number = 0
    confirming = False
    while True:
        where = f"page {number + 1} of {path}"
        check = _PageCheck(client.base_url, where, query, progress, seen, size)
        client.get_json(path, request, check=check)
        step = check.step
        assert step is not None  # get_json returns only once the check passed
        number += 1
        if confirming and step.records:
            log.warning(
                "%s: the page before said it was the last (has_more false) but was full; "
                "its cursor brought %d more record(s): reading on",
                where, len(step.records),
            )  # fmt: skip
        # A full page that says it is the last is the server's word against what a page
        # holds: its cursor is asked once more, and only an answer with nothing after it
        # (or a shorter last page) proves the query's end. (Without a cursor, or with one
        # already asked, there is nothing to ask: ``_PageCheck`` refused it.)
        confirming = not step.has_more and len(step.records) >= size
        more = step.has_more or confirming
        new = progress.take(step.records)
        yield Page(number, step.records, more, progress.position(more))
        if not more:
            return
        stalled, empty = (0, 0) if new else (stalled + 1, empty + (not step.records))
        if stalled > MAX_STALLED_PAGES:
            what = (
                f"{stalled} empty pages in a row that claim has_more"
                if empty == stalled
                else f"{stalled} pages in a row brought no record not already read"
            )
            raise PaginationError(f"{where}: {what}; the chain does not progress, giving up")
        request = [*query.params, (AFTER, str(step.cursor))]
        if not seen.add(f"cursor:{step.cursor}"):
            raise PaginationError(
                f"{where}: Zendesk returned a cursor already seen in this query (a loop); giving up"
            )
