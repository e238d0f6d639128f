"""The cursor chain of one audit-log query, with guards; nothing about retries or state.

``iter_pages`` sends the first request (path + params), then, while
``meta.has_more`` is true, follows ``links.next`` when it is on the client's own base
URL (``etl.common.urls.link_is_ours``: same scheme, host, port and path prefix, as the HTTP
library will really connect), else sends the original params plus
``page[after]=meta.after_cursor`` (a proxy's links may point at the real Zendesk host,
where credentials must never go). Pages are yielded one at a time, so memory stays
flat however long the chain.

Each answer is checked inside the client's retry loop (``get_json(check=...)``): a 200
of the wrong shape (no ``audit_logs`` list, no ``meta`` object, ``has_more`` missing or
not a boolean, ``has_more`` true with neither a usable next link nor an
``after_cursor``) is a CorruptResponseError: retried, and when it persists the run
stops (exit 4) with everything stored so far committed; such a page is never taken as
the last one. A link that parsers read differently or that carries user info is an
UnsafeLinkError, never requested.

Guards, each a PaginationError:

* a cursor (or next link) already seen in this query (the last ``SEEN_MEMORY``);
* more than ``MAX_EMPTY_PAGES`` consecutive empty pages that claim ``has_more``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from etl.common.clock import format_time
from etl.common.errors import ConfigError, CorruptResponseError, PaginationError
from etl.common.redact import redact_url, snippet
from etl.common.settings import FILTER_KEYS
from etl.common.urls import link_is_ours

AUDIT_LOGS_PATH = "/api/v2/audit_logs"
MAX_PAGE_SIZE = 100
MAX_EMPTY_PAGES = 20
SEEN_MEMORY = 1000
SORTS = ("created_at", "-created_at")


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
    number: int  # 1-based within this query
    records: list[Any]  # as decoded; validation is records.py's job
    has_more: bool


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
    params = [
        ("filter[created_at][]", format_time(start)),
        ("filter[created_at][]", format_time(end)),
    ]
    for name in FILTER_KEYS:
        params += [(f"filter[{name}][]", str(value)) for value in filters.get(name, ())]
    params += [("sort", sort), ("page[size]", str(page_size))]
    return params


class _Seen:
    """The last ``limit`` keys, in insertion order."""

    def __init__(self, limit: int) -> None:
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

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
    next_url: str | None  # a usable links.next, else None
    cursor: str | None


def read_page(body: dict[str, Any], base_url: str, where: str) -> _Step:
    """``body`` as one page; CorruptResponseError if it is not one, UnsafeLinkError for a
    next link that must never be requested."""
    records = body.get("audit_logs")
    if not isinstance(records, list):
        keys = ", ".join(sorted(str(k) for k in body)[:8]) or "none"
        raise CorruptResponseError(f"{where}: the answer has no audit_logs list (keys: {keys})")
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise CorruptResponseError(
            f"{where}: the answer's meta is not an object ({type(meta).__name__})"
        )
    has_more = meta.get("has_more")
    if not isinstance(has_more, bool):
        said = "missing" if "has_more" not in meta else f"{snippet(repr(has_more), 40)}"
        raise CorruptResponseError(f"{where}: meta.has_more is {said}, not true or false")
    if not has_more:
        return _Step(records, False, None, None)
    cursor = meta.get("after_cursor")
    cursor = cursor if isinstance(cursor, str) and cursor else None
    links = body.get("links")
    next_link = links.get("next") if isinstance(links, dict) else None
    next_link = next_link if isinstance(next_link, str) and next_link else None
    next_url = next_link if next_link is not None and link_is_ours(next_link, base_url) else None
    if next_url is None and cursor is None:
        foreign = f" (links.next {redact_url(next_link)} is on another host)" if next_link else ""
        raise CorruptResponseError(
            f"{where}: has_more is true but there is no after_cursor to continue{foreign}"
        )
    return _Step(records, True, next_url, cursor)


class _PageCheck:
    """``read_page`` as a client's ``check``, keeping the last page it read."""

    def __init__(self, base_url: str, where: str) -> None:
        self.base_url = base_url
        self.where = where
        self.step: _Step | None = None

    def __call__(self, body: dict[str, Any]) -> None:
        self.step = read_page(body, self.base_url, self.where)


def iter_pages(
    client: JsonGetter, params: Sequence[tuple[str, str]], path: str = AUDIT_LOGS_PATH
) -> Iterator[Page]:
    """Every page of the query ``params``, lazily, in the order Zendesk gives them."""
    base_params = [(k, v) for k, v in params if k != "page[after]"]
    url: str = path
    query: list[tuple[str, str]] | None = list(params)
    seen = _Seen(SEEN_MEMORY)
    empty_streak = 0
    number = 0
    while True:
        where = f"page {number + 1} of {path}"
        check = _PageCheck(client.base_url, where)
        client.get_json(url, query, check=check)
        step = check.step
        assert step is not None  # get_json returns only once the check passed
        number += 1
        yield Page(number=number, records=step.records, has_more=step.has_more)
        if not step.has_more:
            return
        empty_streak = 0 if step.records else empty_streak + 1
        if empty_streak > MAX_EMPTY_PAGES:
            raise PaginationError(
                f"{where}: {empty_streak} empty pages in a row that claim has_more; giving up"
            )
        if step.next_url is not None:
            url, query = step.next_url, None
        else:
            url, query = path, [*base_params, ("page[after]", str(step.cursor))]
        key = f"cursor:{step.cursor}" if step.cursor is not None else f"link:{step.next_url}"
        if not seen.add(key):
            raise PaginationError(
                f"{where}: Zendesk returned a cursor already seen in this query (a loop); giving up"
            )
