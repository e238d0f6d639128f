"""The cursor chain of one audit-log query, with guards; nothing about retries or state.

``iter_pages`` sends the first request (path + params), then, while
``meta.has_more`` is true, follows ``links.next`` when it points at the client's
own base URL (same scheme, host and port), else sends the original params plus
``page[after]=meta.after_cursor`` (a proxy's links may point at the real Zendesk
host, where credentials must never go). Pages are yielded one at a time, so
memory stays flat however long the chain.

A 200 whose body does not have the expected shape (no ``audit_logs`` list, no
``meta`` object, a non-boolean ``has_more``) is a PaginationError, not retried:
the run stops, everything stored so far stays committed, and the next run
resumes from the last checkpoint. (The client already retries bodies that are
not JSON objects at all: HTML, truncated JSON.)

Guards, each a PaginationError:

* a cursor (or next link) already seen in this query (the last ``SEEN_MEMORY``);
* ``has_more`` true with neither a usable next link nor an ``after_cursor``;
* more than ``MAX_EMPTY_PAGES`` consecutive empty pages that claim ``has_more``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from etl.client import same_origin
from etl.errors import ConfigError, PaginationError
from etl.redact import redact_url
from etl.settings import FILTER_KEYS

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
        self, url: str, params: Sequence[tuple[str, str]] | None = None
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Page:
    number: int  # 1-based within this query
    records: list[Any]  # as decoded; validation is records.py's job
    has_more: bool


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: use an aware UTC datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        body = client.get_json(url, query)
        number += 1
        where = f"page {number} of {path}"
        records, meta, links = _parts(body, where)
        has_more = meta.get("has_more", False)
        if not isinstance(has_more, bool):
            raise PaginationError(f"{where}: meta.has_more is {has_more!r}, not true or false")
        yield Page(number=number, records=records, has_more=has_more)
        if not has_more:
            return
        empty_streak = 0 if records else empty_streak + 1
        if empty_streak > MAX_EMPTY_PAGES:
            raise PaginationError(
                f"{where}: {empty_streak} empty pages in a row that claim has_more; giving up"
            )
        cursor = meta.get("after_cursor")
        cursor = cursor if isinstance(cursor, str) and cursor else None
        next_link = links.get("next")
        next_link = next_link if isinstance(next_link, str) and next_link else None
        if next_link is not None and same_origin(next_link, client.base_url):
            url, query = next_link, None
        elif cursor is not None:
            url, query = path, [*base_params, ("page[after]", cursor)]
        else:
            foreign = (
                f" (links.next {redact_url(next_link)} is on another host)" if next_link else ""
            )
            raise PaginationError(
                f"{where}: has_more is true but there is no after_cursor to continue{foreign}"
            )
        key = f"cursor:{cursor}" if cursor is not None else f"link:{next_link}"
        if not seen.add(key):
            raise PaginationError(
                f"{where}: Zendesk returned a cursor already seen in this query (a loop); giving up"
            )


def _parts(body: dict[str, Any], where: str) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    records = body.get("audit_logs")
    if not isinstance(records, list):
        keys = ", ".join(sorted(str(k) for k in body)[:8]) or "none"
        raise PaginationError(f"{where}: the answer has no audit_logs list (keys: {keys})")
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise PaginationError(
            f"{where}: the answer's meta is not an object ({type(meta).__name__})"
        )
    links = body.get("links")
    return records, meta, links if isinstance(links, dict) else {}
