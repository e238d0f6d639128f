"""Access-log records for the simulator: a lazy generated source and added records.

``GET /api/v2/access_logs`` (docs: shared/reference/access-logs.md) holds far more
records than the audit log, so generated records are derived from ``(seed, n, i)`` like
the audit log's (``zendesk_sim.audit.generate``) and never built until served. Record ``i``'s
``timestamp`` is non-decreasing in ``i``; its id is a ULID-like string (26 Crockford
base32 characters: milliseconds, then hashed bits).

Every record has a sort key ``(timestamp epoch seconds, rank)``: ``i`` for a generated
record, ``ADDED_RANK`` plus a hash of the id for an added one, so a cursor naming a key
stays valid however many records are added later.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from zendesk_sim.wire.cursor import Key
from zendesk_sim.wire.hashing import mix
from zendesk_sim.wire.timestamps import format_ts, parse_ts, to_epoch

ADDED_RANK = 1 << 61
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_USERS = (
    "6596848315901",
    "6596848315902",
    "360001482211",
    "360004113870",
    "900000000017",
    "900000000018",
    "1502233445566",
)
_IPS = ("192.168.1.100", "198.51.100.23", "203.0.113.7", "2001:db8::1f", "192.0.2.41")
_CLIENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
    "Zendesk/1.0",
    "python-requests/2.32.3",
)
_AUTH = ("bearer", "session", "basic", "session", "session")
_ORIGINS = ("support", "agent_workspace", "api", "explore")


def ulid(millis: int, bits: int) -> str:
    """A ULID's text: 48 bits of milliseconds, then 80 bits (from ``bits``)."""
    value = (millis & ((1 << 48) - 1)) << 80 | (bits & ((1 << 80) - 1))
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


class AccessSource:
    """``n`` deterministic access records spread evenly over [start, end)."""

    def __init__(self, n: int, *, start: datetime, end: datetime, seed: int = 0) -> None:
        if n < 0:
            raise ValueError("n must be >= 0")
        self._n = n
        self._seed = seed
        self._first = int(to_epoch(start))
        self._span = max(int(to_epoch(end)) - self._first, 1)

    def __len__(self) -> int:
        return self._n

    def ts(self, i: int) -> int:
        return self._first + (i * self._span) // max(self._n, 1)

    def key(self, i: int) -> Key:
        return (self.ts(i), i)

    def bisect_left(self, key: Key) -> int:
        lo, hi = 0, self._n
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self._n:
            raise IndexError(i)
        bits = mix(self._seed ^ (i * 0xA24BAED4963EE407))
        ts = self.ts(i)
        user = _USERS[bits % len(_USERS)]
        ticket = 1 + (bits >> 12) % 5000
        graphql = (bits >> 40) % 20 == 0
        method = "GET" if (bits >> 8) % 10 < 8 else ("PUT", "POST", "DELETE")[(bits >> 16) % 3]
        kind = (bits >> 20) % 4
        if kind == 0:
            url, category, summary = f"/api/v2/users/{ticket + 10_000}.json", "user", "Viewed user"
        elif kind == 1:
            url, category, summary = "/api/v2/search.json?query=refund", "search", "Searched"
        else:
            url, category, summary = f"/api/v2/tickets/{ticket}.json", "ticket", "Viewed ticket"
        return {
            "id": ulid(ts * 1000 + (bits >> 30) % 1000, mix(bits)),
            "timestamp": format_ts(ts),
            "user_id": user,
            "ip_address": _IPS[(bits >> 24) % len(_IPS)],
            "method": "POST" if graphql else method,
            "url": None if graphql else url,
            "status": 200 if (bits >> 28) % 25 else 404,
            "authorization_type": None if graphql else _AUTH[(bits >> 32) % len(_AUTH)],
            "client": _CLIENTS[(bits >> 36) % len(_CLIENTS)],
            "referer": f"https://example.zendesk.com/agent/tickets/{ticket}",
            "bytes_sent": 200 + (bits >> 44) % 50_000,
            "category": "graphql" if graphql else category,
            "summary": f"GraphQL query {ticket}" if graphql else f"{summary} {ticket}",
            "origin_service": _ORIGINS[(bits >> 48) % len(_ORIGINS)],
            "graphql": {"operation_name": "TicketQuery", "variables": {"id": str(ticket)}}
            if graphql
            else None,
        }


def added_key(record: Mapping[str, Any]) -> Key:
    """The sort key of an added record; ValueError without a string id and a timestamp."""
    record_id = record.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise ValueError(f"access record id must be a non-empty string, got {record_id!r}")
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        raise ValueError(f"access record {record_id}: timestamp must be a string")
    digest = hashlib.sha256(record_id.encode()).digest()
    return (parse_ts(stamp), ADDED_RANK + int.from_bytes(digest[:7], "big"))


class AccessLog:
    """Every access record of the simulated account, by key; ``add`` is thread-safe."""

    def __init__(self, source: AccessSource | None = None) -> None:
        self._source = source
        self._keys: list[Key] = []
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add (or replace, by id) records; copy-on-write, so readers need no lock."""
        new = [(added_key(r), dict(r)) for r in records]
        with self._lock:
            replaced = {r["id"] for _, r in new}
            rows = [(k, r) for k, r in zip(self._keys, self._records, strict=True)]
            rows = [(k, r) for k, r in rows if r["id"] not in replaced] + new
            rows.sort(key=lambda row: row[0])
            self._keys, self._records = [k for k, _ in rows], [r for _, r in rows]
        return len(new)

    def scan(self, lo: Key, hi: Key, *, descending: bool) -> Iterator[tuple[Key, dict[str, Any]]]:
        """Records with lo <= key <= hi, in key order (reversed if descending)."""
        return heapq.merge(
            self._scan_generated(lo, hi, descending),
            self._scan_added(lo, hi, descending),
            key=lambda entry: entry[0],
            reverse=descending,
        )

    def _scan_generated(
        self, lo: Key, hi: Key, descending: bool
    ) -> Iterator[tuple[Key, dict[str, Any]]]:
        source = self._source
        if source is None:
            return
        first = source.bisect_left(lo)
        stop = source.bisect_left((hi[0], hi[1] + 1))
        indexes = range(stop - 1, first - 1, -1) if descending else range(first, stop)
        for i in indexes:
            yield source.key(i), source[i]

    def _scan_added(
        self, lo: Key, hi: Key, descending: bool
    ) -> Iterator[tuple[Key, dict[str, Any]]]:
        keys, records = self._keys, self._records  # one snapshot
        first, stop = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
        positions = range(stop - 1, first - 1, -1) if descending else range(first, stop)
        for j in positions:
            yield keys[j], dict(records[j])

    def __len__(self) -> int:
        return (len(self._source) if self._source else 0) + len(self._keys)
