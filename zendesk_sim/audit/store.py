"""The simulator's record collection: a lazy generated source merged with added records.

Added records live in sorted parallel lists replaced wholesale on every change
(copy-on-write), so request threads scan a consistent snapshot without taking a
lock, and ``add`` is safe while pages are being served. A record added with
``visible_after`` exists but is left out of every query until that many seconds
have passed: the late visibility that production connectors ran into.

Pages go out as JSON text joined from per-record ``fragment``s: added records
are encoded once, when added; generated ones are written straight to text.
"""

from __future__ import annotations

import bisect
import heapq
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from zendesk_sim.audit.generate import RecordSource
from zendesk_sim.wire.cursor import Key
from zendesk_sim.wire.responses import compact_json
from zendesk_sim.wire.timestamps import parse_ts


@dataclass(frozen=True, slots=True)
class Stored:
    """An added record, with its JSON text (as in a response body) encoded once."""

    record: dict[str, Any]
    text: str


Item = int | Stored
"""Where a record comes from: an index into the generated source, or an added record."""

LOWEST: Key = (-(2**63), -(2**63))
HIGHEST: Key = (2**63, 2**63)


@dataclass(frozen=True)
class _Added:
    keys: list[Key] = field(default_factory=list)
    records: list[Stored] = field(default_factory=list)
    visible_at: list[float] = field(default_factory=list)


def record_key(record: Mapping[str, Any]) -> Key:
    """The sort position of a record given to ``add``; ValueError if it has none."""
    record_id = record.get("id")
    if not isinstance(record_id, int) or isinstance(record_id, bool):
        raise ValueError(f"record id must be an integer, got {record_id!r}")
    created_at = record.get("created_at")
    if not isinstance(created_at, str):
        raise ValueError(f"record {record_id}: created_at must be a string")
    return (parse_ts(created_at), record_id)


class RecordStore:
    """Every record the simulated account holds, ordered by (created_at, id)."""

    def __init__(
        self, source: RecordSource | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._source = source
        # The hot path straight to the generated text, one call fewer than source.fragment.
        self._fragment = source.content.fragment if source is not None else None
        self._clock = clock
        self._added = _Added()
        self._write_lock = threading.Lock()

    def add(self, records: Iterable[Mapping[str, Any]], visible_after: float = 0.0) -> int:
        """Add (or replace, by id) records; hidden for ``visible_after`` seconds. Returns count.

        Raises ValueError for a record without an integer id or a valid created_at,
        or whose id belongs to a generated record (the merge assumes ids are unique).
        """
        visible_at = self._clock() + visible_after if visible_after > 0 else 0.0
        # A JSON round trip copies deeply and proves the record can be served.
        new = [json.loads(json.dumps(dict(record))) for record in records]
        keyed = [(record_key(record), Stored(record, compact_json(record))) for record in new]
        for (_, record_id), _ in keyed:
            if self._source is not None and self._source.owns_id(record_id):
                raise ValueError(f"record id {record_id} belongs to a generated record")
        with self._write_lock:
            old = self._added
            replaced = {record_id for (_, record_id), _ in keyed}
            rows = [
                (key, record, seen)
                for key, record, seen in zip(old.keys, old.records, old.visible_at, strict=True)
                if key[1] not in replaced
            ]
            rows.extend((key, record, visible_at) for key, record in keyed)
            rows.sort(key=lambda row: row[0])
            self._added = _Added(
                keys=[row[0] for row in rows],
                records=[row[1] for row in rows],
                visible_at=[row[2] for row in rows],
            )
        return len(keyed)

    def scan(self, lo: Key, hi: Key, *, descending: bool) -> Iterator[tuple[Key, Item]]:
        """Visible records with lo <= key <= hi, in key order (reversed if descending)."""
        if not self._added.keys:  # the common benchmark case: skip the merge's overhead
            return self._scan_generated(lo, hi, descending)
        return heapq.merge(
            self._scan_generated(lo, hi, descending),
            self._scan_added(lo, hi, descending),
            key=lambda entry: entry[0],
            reverse=descending,
        )

    def _scan_generated(self, lo: Key, hi: Key, descending: bool) -> Iterator[tuple[Key, Item]]:
        source = self._source
        if source is None:
            return
        if descending:
            i = source.bisect_right(hi) - 1
            while i >= 0:
                key = source.key(i)
                if key < lo:
                    return
                yield key, i
                i -= 1
        else:
            i, n = source.bisect_left(lo), len(source)
            while i < n:
                key = source.key(i)
                if key > hi:
                    return
                yield key, i
                i += 1

    def _scan_added(self, lo: Key, hi: Key, descending: bool) -> Iterator[tuple[Key, Item]]:
        added, now = self._added, self._clock()
        first, stop = bisect.bisect_left(added.keys, lo), bisect.bisect_right(added.keys, hi)
        positions = range(stop - 1, first - 1, -1) if descending else range(first, stop)
        for j in positions:
            if added.visible_at[j] <= now:
                yield added.keys[j], added.records[j]

    def materialize(self, item: Item) -> dict[str, Any]:
        """The record as a fresh dict the caller may change."""
        if isinstance(item, int):
            assert self._source is not None
            return self._source[item]
        return dict(item.record)

    def fragment(self, key: Key, item: Item) -> str:
        """The record's JSON text in a response, as ``compact_json(materialize(item))``."""
        if isinstance(item, int):
            assert self._fragment is not None
            return self._fragment(item, key)
        return item.text

    def count(self, lo: Key = LOWEST, hi: Key = HIGHEST) -> int:
        """Visible records with lo <= key <= hi, without materializing generated ones."""
        total = 0
        if self._source is not None:
            total = self._source.bisect_right(hi) - self._source.bisect_left(lo)
        return total + sum(1 for _ in self._scan_added(lo, hi, False))

    def get(self, record_id: int) -> dict[str, Any] | None:
        """One visible record by id, or None."""
        if self._source is not None:
            index = self._source.index_of_id(record_id)
            if index is not None:
                return self._source[index]
        added, now = self._added, self._clock()
        for key, stored, seen in zip(added.keys, added.records, added.visible_at, strict=True):
            if key[1] == record_id and seen <= now:
                return dict(stored.record)
        return None

    def iter_visible(self) -> Iterator[dict[str, Any]]:
        """Every visible record, ascending by (created_at, id)."""
        for _, item in self.scan(LOWEST, HIGHEST, descending=False):
            yield self.materialize(item)
