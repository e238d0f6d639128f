"""Lazy, deterministic audit-log records: record ``i`` is derived from ``(seed, n, i)``.

A ``RecordSource`` of a million records holds a handful of numbers, not a million
dicts, so benchmarks can pull huge accounts through the simulator. Two
functions of ``i`` make that possible:

* ``created_at(i)`` is non-decreasing in ``i``. A piecewise-linear time warp
  gives a dense period and quiet stretches. In half of the blocks of 64 records
  (fewer for small sources) a hash-chosen run of 2..64 records is pinned to one
  second (a burst), so dozens of records share a ``created_at`` and those ties
  straddle page boundaries.
* ``id(i)`` is increasing, 13 digits, with hash jitter.

Two shapes. ``even`` (the default for tests that rely on it) is the above. ``bursty``
looks like a busy real account: blocks of 400 records, four in five holding a burst
of 20-300 records in one second (about a third of all records share their second with
the previous one), long quiet stretches (three of twelve segments at 1%), and about 2%
of ids out of created_at order: a record that opens its second takes an id from a
slot up to a few thousand records back (its slot's upper half, so ids stay unique).

Either way the order (created_at, id) is the order of ``i`` (an out-of-order id only
opens a second, so within a second ids still rise), and a time or key bound becomes
an index by binary search. Generated ids all lie in
[``ID_BASE``, ``ID_BASE + n * ID_STRIDE``); ``owns_id`` tells whether an id is one.

Serving a page is the simulator's hot path, so ``fragment`` writes a record's JSON
text directly from pre-escaped pieces (``content.Content``: the same bytes
``json.dumps`` makes of ``source[i]``), and searches start from the index an id implies.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import lru_cache
from typing import Any

from zendesk_sim.audit.content import Content
from zendesk_sim.wire.cursor import Key
from zendesk_sim.wire.hashing import mix
from zendesk_sim.wire.timestamps import to_epoch

ID_BASE = 6_100_000_000_000
ID_STRIDE = 7_919
_BLOCK = 64
_SEGMENTS = 12
SHAPES = ("even", "bursty")
_BURSTY_BLOCK = 400
_BURST_SHARE = 80  # percent of bursty blocks holding a burst
_BURST_MIN, _BURST_MAX = 20, 300
_DISPLACED = 3  # percent of records (opening a second) whose id is out of created_at order
_HALF = ID_STRIDE // 2


class RecordSource:
    """``n`` generated records over [start, end), ascending by (created_at, id).

    Supports ``len()``, iteration, indexing (``source[i]`` is a fresh dict),
    ``key(i)`` and binary searches by key, all without materializing records.
    """

    def __init__(
        self,
        n: int,
        *,
        start: datetime,
        end: datetime,
        seed: int = 0,
        base_url: str = "https://example.zendesk.com",
        shape: str = "even",
    ) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}")
        self.shape = shape
        self._bursty = shape == "bursty"
        self._n = n
        self._start = to_epoch(start)
        self._end = to_epoch(end)
        if self._end <= self._start:
            raise ValueError("end must be after start")
        self._seed = mix(seed)
        # Smaller blocks for small sources, so even a 50-record fixture has ties.
        self._block = _BURSTY_BLOCK if self._bursty else max(8, min(_BLOCK, n // 8))
        self.content = Content(self._seed, base_url)
        """What each record says: ``content.fragment(i, key(i))`` is ``fragment(i, key(i))``."""
        self._fractions, self._times = self._warp()
        # Per segment: (first share, share width, first time, duration), as _base_time uses them.
        fractions, times = self._fractions, self._times
        self._segments = [
            (fractions[k], fractions[k + 1] - fractions[k], times[k], times[k + 1] - times[k])
            for k in range(_SEGMENTS)
        ]
        self._first_second = math.ceil(self._start)
        self._last_second = math.ceil(self._end) - 1
        # Consecutive records share a block, so a page computes each block's burst once.
        self._bursts: Callable[[int], tuple[int, int, int] | None] = lru_cache(maxsize=1024)(
            self._burst
        )

    def _warp(self) -> tuple[list[float], list[float]]:
        """Breakpoints (share of records, time) of a piecewise-linear time warp.

        The span is cut into equal segments; one is dense (6x the records), two
        are quiet (5% of normal), so the timeline has rushes and lulls.
        """
        weights = [0.5 + (mix(self._seed ^ (k + 1)) % 1000) / 1000 for k in range(_SEGMENTS)]
        pick = mix(self._seed ^ 0xD15E)
        weights[pick % _SEGMENTS] = 6.0
        quiet = 0.01 if self._bursty else 0.05
        for shift in (8, 16, 24) if self._bursty else (8, 16):
            weights[(pick >> shift) % _SEGMENTS] = quiet
        total = sum(weights)
        fractions, times, acc = [0.0], [self._start], 0.0
        step = (self._end - self._start) / _SEGMENTS
        for k, weight in enumerate(weights):
            acc += weight / total
            fractions.append(acc)
            times.append(self._start + (k + 1) * step)
        fractions[-1] = 1.0
        return fractions, times

    def _base_time(self, i: int) -> int:
        """The warped second of record ``i`` before bursts are applied (monotone in i)."""
        share = (i + 0.5) / self._n
        k = min(bisect.bisect_right(self._fractions, share) - 1, _SEGMENTS - 1)
        lo, width, t0, duration = self._segments[k]
        moment = t0 + (share - lo) / width * duration if width > 0 else t0
        return max(min(math.floor(moment), self._last_second), self._first_second)

    def _burst(self, block: int) -> tuple[int, int, int] | None:
        """(first index, stop index, created_at) of the run pinned to one second in ``block``."""
        size = self._block
        bits = mix(self._seed ^ (block * 0x632BE59BD9B4E019))
        roll = bits % 100
        if self._bursty:
            if roll >= _BURST_SHARE:
                return None
            length = _BURST_MIN + (bits >> 8) % (_BURST_MAX - _BURST_MIN + 1)
            first = block * size + (bits >> 24) % (size - length + 1)
            return first, first + length, self._base_time(first)
        if roll >= 50:
            return None
        first = block * size
        if roll < 50 - 8:  # a burst of 2..60 inside the block; else the whole block
            first += (bits >> 8) % size
            length = 2 + (bits >> 16) % 59
        else:
            length = size
        return first, first + length, self._base_time(first)

    def created_ts(self, i: int) -> int:
        """created_at of record ``i`` as epoch seconds; non-decreasing in ``i``."""
        burst = self._bursts(i // self._block)
        if burst is not None and burst[0] <= i < burst[1]:
            return burst[2]
        return self._base_time(i)

    def record_id(self, i: int) -> int:
        bits = mix(self._seed ^ i ^ 0x1D)
        if not self._bursty:
            return ID_BASE + i * ID_STRIDE + bits % ID_STRIDE
        back = self._displacement(i, bits)
        if back:  # an older slot's upper half: below ids of records created before it
            return ID_BASE + (i - back) * ID_STRIDE + _HALF + back
        return ID_BASE + i * ID_STRIDE + bits % _HALF

    def _displacement(self, i: int, bits: int) -> int:
        """How many slots back record ``i``'s id lies (0: in order). Only a record that
        opens its second moves: within a second, ids rise with ``i``."""
        if (bits >> 40) % 100 >= _DISPLACED or i == 0:
            return 0
        if self.created_ts(i - 1) == self.created_ts(i):
            return 0
        return 1 + (bits >> 8) % min(i, _HALF - 1)

    def owns_id(self, record_id: int) -> bool:
        return self.index_of_id(record_id) is not None

    def index_of_id(self, record_id: int) -> int | None:
        slot, rest = divmod(record_id - ID_BASE, ID_STRIDE)
        i = slot + rest - _HALF if self._bursty and rest > _HALF else slot
        return i if 0 <= i < self._n and self.record_id(i) == record_id else None

    def key(self, i: int) -> Key:
        return (self.created_ts(i), self.record_id(i))

    def bisect_left(self, key: Key) -> int:
        """First index whose key is >= ``key``."""
        return self._search(key, lambda i: self.key(i) < key)

    def bisect_right(self, key: Key) -> int:
        """First index whose key is > ``key``."""
        return self._search(key, lambda i: self.key(i) <= key)

    def _search(self, key: Key, below: Callable[[int], bool]) -> int:
        """The first index not ``below`` (a predicate true up to some index, then false).

        A cursor names a record's key (or one id next to it), so the index its id
        implies is next to the answer: gallop out from there, a few steps, not log2(n).
        Other keys (created_at bounds, ids not generated here) bisect the whole range.
        """
        n = self._n
        guess = (key[1] - ID_BASE) // ID_STRIDE
        lo, hi = 0, n
        if 0 <= guess < n:
            step = 1
            if below(guess):  # the answer lies above guess
                lo = probe = guess + 1
                while probe < n and below(probe):
                    lo = probe + 1
                    step *= 2
                    probe = guess + step
                hi = min(probe, n)
            else:  # the answer is guess or below it
                hi = guess
                probe = guess - 1
                while probe >= 0 and not below(probe):
                    hi = probe
                    step *= 2
                    probe = guess - step
                lo = max(probe + 1, 0)
        while lo < hi:
            mid = (lo + hi) // 2
            if below(mid):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(self._n))

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self.content.record(i, self.key(i))

    def fragment(self, i: int, key: Key) -> str:
        """``source[i]`` as the compact JSON text a response carries; ``key`` is ``key(i)``."""
        return self.content.fragment(i, key)


def generate_records(
    n: int,
    *,
    start: datetime,
    end: datetime,
    seed: int = 0,
    base_url: str = "https://example.zendesk.com",
    shape: str = "even",
) -> RecordSource:
    """``n`` deterministic, realistic records spread unevenly over [start, end); ``shape``
    ``bursty`` for a busy account's bursts, quiet stretches and out-of-order ids."""
    return RecordSource(n, start=start, end=end, seed=seed, base_url=base_url, shape=shape)
