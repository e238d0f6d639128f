"""Run a ``ListQuery`` against the ``RecordStore`` and shape the response body.

Cursor pages are position-based: a cursor names the (created_at, id) of a
record, and the next page starts strictly after it, so records added while a
client pages never shift or repeat what it sees. Only the records returned
(plus one, to know ``has_more``) are materialized unless a non-time filter
forces a scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from etl.simulator import cursor as cursors
from etl.simulator.cursor import Cursor
from etl.simulator.data import RecordStore
from etl.simulator.generate import Key
from etl.simulator.query import ListQuery

LinkBuilder = Callable[[str, str], str]
"""(parameter, value) -> a full URL of this query with that page parameter set."""


@dataclass
class Page:
    query: ListQuery
    records: list[dict[str, Any]]
    keys: list[Key]
    has_more: bool
    backward: bool = False  # read with page[before]


def _after(key: Key) -> Key:
    return (key[0], key[1] + 1)


def _before(key: Key) -> Key:
    return (key[0], key[1] - 1)


def _matching(
    store: RecordStore, query: ListQuery, lo: Key, hi: Key, descending: bool
) -> Iterator[tuple[Key, dict[str, Any] | None]]:
    """(key, record) of matching records; record is None when unfiltered (not yet built)."""
    for key, item in store.scan(lo, hi, descending=descending):
        if not query.filters:
            yield key, None
            continue
        record = store.materialize(item)
        if query.matches(record):
            yield key, record


def _take(
    store: RecordStore, query: ListQuery, lo: Key, hi: Key, descending: bool, skip: int = 0
) -> tuple[list[Key], list[dict[str, Any]], bool]:
    """Up to query.size records after skipping ``skip``; and whether more follow."""
    keys: list[Key] = []
    records: list[dict[str, Any]] = []
    for key, item in store.scan(lo, hi, descending=descending):
        record = None
        if query.filters:
            record = store.materialize(item)
            if not query.matches(record):
                continue
        if skip:
            skip -= 1
            continue
        if len(keys) == query.size:
            return keys, records, True
        keys.append(key)
        records.append(record if record is not None else store.materialize(item))
    return keys, records, False


def cursor_page(store: RecordStore, query: ListQuery) -> Page:
    lo, hi = query.lo, query.hi
    if query.before is not None:
        # Walk away from the cursor against the sort order, then restore the order.
        edge = query.before.key
        if query.descending:
            lo = max(lo, _after(edge))
        else:
            hi = min(hi, _before(edge))
        keys, records, more = _take(store, query, lo, hi, not query.descending)
        keys.reverse()
        records.reverse()
        return Page(query, records, keys, more, backward=True)
    if query.after is not None:
        edge = query.after.key
        if query.descending:
            hi = min(hi, _before(edge))
        else:
            lo = max(lo, _after(edge))
    keys, records, more = _take(store, query, lo, hi, query.descending)
    return Page(query, records, keys, more)


def start_cursor(page: Page) -> str | None:
    """A fresh cursor for the position this page started from (the same records again)."""
    query = page.query
    if query.after is not None:
        return cursors.encode(Cursor(query.after.key, query.descending, query.after.salt + 1))
    if not page.keys:
        return None
    first = page.keys[0]
    edge = _after(first) if query.descending else _before(first)
    return cursors.encode(Cursor(edge, query.descending, 1))


def cursor_body(page: Page, link: LinkBuilder) -> dict[str, Any]:
    descending = page.query.descending
    after = before = None
    if page.keys:
        after = cursors.encode(Cursor(page.keys[-1], descending))
        before = cursors.encode(Cursor(page.keys[0], descending))
    if page.backward:
        next_link = link("page[after]", after) if after else None
        prev_link = link("page[before]", before) if before and page.has_more else None
    else:
        next_link = link("page[after]", after) if after and page.has_more else None
        prev_link = link("page[before]", before) if before and page.query.after else None
    return {
        "audit_logs": page.records,
        "meta": {"has_more": page.has_more, "after_cursor": after, "before_cursor": before},
        "links": {"next": next_link, "prev": prev_link},
    }


def offset_body(store: RecordStore, query: ListQuery, link: LinkBuilder) -> dict[str, Any]:
    skip = (query.page - 1) * query.size
    _, records, more = _take(store, query, query.lo, query.hi, query.descending, skip=skip)
    if query.filters:
        count = sum(1 for _ in _matching(store, query, query.lo, query.hi, False))
    else:
        count = store.count(query.lo, query.hi)
    return {
        "audit_logs": records,
        "next_page": link("page", str(query.page + 1)) if more else None,
        "previous_page": link("page", str(query.page - 1)) if query.page > 1 else None,
        "count": count,
    }
