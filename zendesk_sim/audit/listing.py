"""Run a ``ListQuery`` against the ``RecordStore`` and shape the response body.

Cursor pages are position-based: a cursor names the (created_at, id) of a
record, and the next page starts strictly after it, so records added while a
client pages never shift or repeat what it sees. Only the records returned
(plus one, to know ``has_more``) are looked at unless a non-time filter forces
a scan.

A page holds where its records come from (``Item``s), not dicts: ``encode``
joins each record's JSON text into the body, and only a fault that alters
records gets them as dicts (``materialize``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from zendesk_sim.audit.query import ListQuery
from zendesk_sim.audit.store import Item, RecordStore
from zendesk_sim.wire import cursor as cursors
from zendesk_sim.wire.cursor import Cursor, Key
from zendesk_sim.wire.responses import compact_json

LinkBuilder = Callable[[str, str], str]
"""(parameter, value) -> a full URL of this query with that page parameter set."""


@dataclass
class Page:
    query: ListQuery
    items: list[Item]
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
) -> tuple[list[Key], list[Item], bool]:
    """Up to query.size records after skipping ``skip``; and whether more follow."""
    entries: Iterable[tuple[Key, Item]] = store.scan(lo, hi, descending=descending)
    if query.filters:
        entries = (entry for entry in entries if query.matches(store.materialize(entry[1])))
    # One record past the page tells has_more.
    taken = list(islice(entries, skip, skip + query.size + 1))
    more = len(taken) > query.size
    del taken[query.size :]
    return [key for key, _ in taken], [item for _, item in taken], more


def cursor_page(store: RecordStore, query: ListQuery) -> Page:
    lo, hi = query.lo, query.hi
    if query.before is not None:
        # Walk away from the cursor against the sort order, then restore the order.
        edge = query.before.key
        if query.descending:
            lo = max(lo, _after(edge))
        else:
            hi = min(hi, _before(edge))
        keys, items, more = _take(store, query, lo, hi, not query.descending)
        keys.reverse()
        items.reverse()
        return Page(query, items, keys, more, backward=True)
    if query.after is not None:
        edge = query.after.key
        if query.descending:
            hi = min(hi, _before(edge))
        else:
            lo = max(lo, _after(edge))
    keys, items, more = _take(store, query, lo, hi, query.descending)
    return Page(query, items, keys, more)


def previous_page(store: RecordStore, page: Page) -> Page | None:
    """The page a cursor page's ``page[after]`` came from: the records up to and including
    the cursor's own, as many as a page holds (None: a first page, nothing before it)."""
    query = page.query
    if query.after is None:
        return None
    lo, hi = query.lo, query.hi
    if query.descending:
        lo = max(lo, query.after.key)
    else:
        hi = min(hi, query.after.key)
    keys, items, _ = _take(store, query, lo, hi, not query.descending)
    keys.reverse()
    items.reverse()
    return Page(query, items, keys, page.has_more)


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


def cursor_fields(page: Page, link: LinkBuilder) -> dict[str, Any]:
    """The body of a cursor page after ``audit_logs``: ``meta`` and ``links``."""
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
        "meta": {"has_more": page.has_more, "after_cursor": after, "before_cursor": before},
        "links": {"next": next_link, "prev": prev_link},
    }


def offset_page(store: RecordStore, query: ListQuery) -> Page:
    skip = (query.page - 1) * query.size
    keys, items, more = _take(store, query, query.lo, query.hi, query.descending, skip=skip)
    return Page(query, items, keys, more)


def offset_fields(store: RecordStore, page: Page, link: LinkBuilder) -> dict[str, Any]:
    """The body of an offset page after ``audit_logs``."""
    query = page.query
    if query.filters:
        count = sum(1 for _ in _matching(store, query, query.lo, query.hi, False))
    else:
        count = store.count(query.lo, query.hi)
    return {
        "next_page": link("page", str(query.page + 1)) if page.has_more else None,
        "previous_page": link("page", str(query.page - 1)) if query.page > 1 else None,
        "count": count,
    }


def materialize(store: RecordStore, page: Page) -> list[dict[str, Any]]:
    """The page's records as fresh dicts, for a fault to alter."""
    return [store.materialize(item) for item in page.items]


def encode(store: RecordStore, page: Page, fields: dict[str, Any]) -> str:
    """``compact_json({"audit_logs": materialize(store, page), **fields})``, built from
    each record's JSON text: a list's and an object's JSON are the JSON of their parts."""
    pairs = zip(page.keys, page.items, strict=True)
    records = ",".join([store.fragment(key, item) for key, item in pairs])
    return f'{{"audit_logs":[{records}],{compact_json(fields)[1:]}'
