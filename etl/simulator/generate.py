"""Lazy, deterministic audit-log records: record ``i`` is derived from ``(seed, n, i)``.

A ``RecordSource`` of a million records holds a handful of numbers, not a million
dicts, so benchmarks can pull huge accounts through the simulator. Two
functions of ``i`` make that possible:

* ``created_at(i)`` is non-decreasing in ``i``. A piecewise-linear time warp
  gives a dense period and quiet stretches. In half of the blocks of 64 records
  (fewer for small sources) a hash-chosen run of 2..64 records is pinned to one
  second (a burst), so dozens of records share a ``created_at`` and those ties
  straddle page boundaries.
* ``id(i)`` is strictly increasing, 13 digits, with hash jitter.

So the order (created_at, id) is the order of ``i``, and a time or key bound
becomes an index by binary search. Generated ids all lie in
[``ID_BASE``, ``ID_BASE + n * ID_STRIDE``); ``owns_id`` tells whether an id is one.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from etl.simulator.timestamps import format_ts, to_epoch

Key = tuple[int, int]
"""A record's sort position: (created_at epoch seconds, id)."""

ID_BASE = 6_100_000_000_000
ID_STRIDE = 7_919
_MASK = (1 << 64) - 1
_BLOCK = 64
_SEGMENTS = 12

_ACTORS = (
    (360_001_482_211, "Sameer Patel", "209.119.38.228"),
    (360_001_482_212, "John Doe", "198.51.100.23"),
    (360_001_482_359, "Zoë Åström", "203.0.113.7"),
    (360_004_113_870, "José Núñez", "2001:db8::1f"),
    (360_004_113_871, "李雷", "198.51.100.77"),
    (360_009_201_004, "Priya Raman", "192.0.2.41"),
    (360_009_201_005, "O'Brien, Siobhán", "203.0.113.199"),
    (360_012_774_118, "Support Bot (API)", "192.0.2.10"),
    (900_000_000_017, 'Ana María "Anita" Ruiz', "198.51.100.5"),
    (900_000_000_018, "Kwame Mensah", "192.0.2.200"),
)
_PEOPLE = ("Bob Cat", "Alice Liddell", "Émile Zola", "Grace Hopper", "Ada Lovelace", "Mia Wong")

# (source_type, action, action_label, source_label, change_description); {p} is a
# person, {n} a number. Descriptions mirror the kinds seen in real exports.
_Event = tuple[str, str, str, str, str]
_EVENTS: tuple[_Event, ...] = (
    ("user", "update", "Updated", "{p}", "Role changed from End User to Administrator"),
    ("user", "update", "Updated", "{p}", "Email changed from {n}@old.example to {n}@example.com"),
    ("user", "create", "Created", "{p}", ""),
    ("user", "login", "Signed in", "{p}", "Successful sign-in using Zendesk password"),
    ("user", "destroy", "Deleted", "{p}", ""),
    ("user_setting", "update", "Updated", "Suspension state: {p}", "Suspended"),
    ("user_setting", "update", "Updated", "Suspension state: {p}", "Unsuspended"),
    (
        "rule",
        "update",
        "Updated",
        "Trigger: Notify requester of comment update",
        "Conditions changed\nActions changed",
    ),
    ("rule", "create", "Created", "Automation: Close ticket {n} days after solved", ""),
    ("rule", "destroy", "Deleted", "View: Unassigned tickets #{n}", ""),
    ("ticket", "destroy", "Deleted", "Ticket #{n}", ""),
    ("ticket", "exported", "Exported", "Ticket export", "Full JSON export requested"),
    ("api_token", "create", "Created", "API token", ""),
    (
        "api_token",
        "update",
        "Updated",
        "API token: token {n}",
        "description changed from not set to token {n}",
    ),
    ("account_setting", "update", "Updated", "Account Assumption", "Changed"),
    ("account_setting", "create", "Created", "Credit Card Redaction", "Enabled"),
    ("account_setting", "update", "Updated", "Password Requirements", "Changed from Low to High"),
    ("group", "update", "Updated", "Group: Tier {n}", 'Name changed from "Tier 1" to "Tier {n}"'),
)
# Zendesk's own housekeeping, done by actor -1 with no IP address.
_SYSTEM_EVENTS: tuple[_Event, ...] = (
    ("attachment", "destroy", "Deleted", "Attachment", ""),
    ("ticket", "update", "Updated", "Ticket #{n}", "Status changed from solved to closed"),
)


def _mix(value: int) -> int:
    """splitmix64 finalizer: a fast, well-spread 64-bit hash."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


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
    ) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        self._n = n
        self._start = to_epoch(start)
        self._end = to_epoch(end)
        if self._end <= self._start:
            raise ValueError("end must be after start")
        self._seed = _mix(seed)
        # Smaller blocks for small sources, so even a 50-record fixture has ties.
        self._block = max(8, min(_BLOCK, n // 8))
        self._url_prefix = base_url.rstrip("/") + "/api/v2/audit_logs/"
        self._fractions, self._times = self._warp()

    def _warp(self) -> tuple[list[float], list[float]]:
        """Breakpoints (share of records, time) of a piecewise-linear time warp.

        The span is cut into equal segments; one is dense (6x the records), two
        are quiet (5% of normal), so the timeline has rushes and lulls.
        """
        weights = [0.5 + (_mix(self._seed ^ (k + 1)) % 1000) / 1000 for k in range(_SEGMENTS)]
        pick = _mix(self._seed ^ 0xD15E)
        weights[pick % _SEGMENTS] = 6.0
        weights[(pick >> 8) % _SEGMENTS] = 0.05
        weights[(pick >> 16) % _SEGMENTS] = 0.05
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
        lo, hi = self._fractions[k], self._fractions[k + 1]
        t0, t1 = self._times[k], self._times[k + 1]
        moment = t0 + (share - lo) / (hi - lo) * (t1 - t0) if hi > lo else t0
        return max(min(math.floor(moment), math.ceil(self._end) - 1), math.ceil(self._start))

    def created_ts(self, i: int) -> int:
        """created_at of record ``i`` as epoch seconds; non-decreasing in ``i``."""
        size = self._block
        block = i // size
        bits = _mix(self._seed ^ (block * 0x632BE59BD9B4E019))
        roll = bits % 100
        if roll < 50:
            first = block * size
            if roll < 50 - 8:  # a burst of 2..60 inside the block; else the whole block
                first += (bits >> 8) % size
                length = 2 + (bits >> 16) % 59
            else:
                length = size
            if first <= i < first + length:
                return self._base_time(first)
        return self._base_time(i)

    def record_id(self, i: int) -> int:
        return ID_BASE + i * ID_STRIDE + _mix(self._seed ^ i ^ 0x1D) % ID_STRIDE

    def owns_id(self, record_id: int) -> bool:
        i, _ = divmod(record_id - ID_BASE, ID_STRIDE)
        return 0 <= i < self._n and self.record_id(i) == record_id

    def index_of_id(self, record_id: int) -> int | None:
        i = (record_id - ID_BASE) // ID_STRIDE
        return i if 0 <= i < self._n and self.record_id(i) == record_id else None

    def key(self, i: int) -> Key:
        return (self.created_ts(i), self.record_id(i))

    def bisect_left(self, key: Key) -> int:
        """First index whose key is >= ``key``."""
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def bisect_right(self, key: Key) -> int:
        """First index whose key is > ``key``."""
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) <= key:
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
        record_id = self.record_id(i)
        bits = _mix(self._seed ^ (i * 0xA24BAED4963EE407))
        number = 1 + (bits >> 40) % 9000
        person = _PEOPLE[(bits >> 20) % len(_PEOPLE)]
        if bits % 100 < 12:
            events = _SYSTEM_EVENTS
            actor_id, actor_name, ip = -1, "Zendesk", None
        else:
            events = _EVENTS
            actor_id, actor_name, ip = _ACTORS[(bits >> 8) % len(_ACTORS)]
            if (bits >> 4) % 10 == 0:  # the same admin from another network now and then
                ip = f"192.0.2.{(bits >> 50) % 254 + 1}"
        source_type, action, label, source_label, description = events[(bits >> 28) % len(events)]
        source_id = number if source_type == "ticket" else 360_000_000_000 + (bits >> 24) % 10**9
        return {
            "url": f"{self._url_prefix}{record_id}.json",
            "id": record_id,
            "action_label": label,
            "actor_id": actor_id,
            "source_id": source_id,
            "source_type": source_type,
            "source_label": source_label.format(p=person, n=number),
            "action": action,
            "change_description": description.format(p=person, n=number),
            "ip_address": ip,
            "created_at": format_ts(self.created_ts(i)),
            "actor_name": actor_name,
        }


def generate_records(
    n: int,
    *,
    start: datetime,
    end: datetime,
    seed: int = 0,
    base_url: str = "https://example.zendesk.com",
) -> RecordSource:
    """``n`` deterministic, realistic records spread unevenly over [start, end)."""
    return RecordSource(n, start=start, end=end, seed=seed, base_url=base_url)
