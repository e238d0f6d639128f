"""Fault injection: queued ``Fault``s that make the next matching responses misbehave.

Faults wait in one FIFO queue. A request is offered to the first queued fault
whose ``path`` matches it: that fault lets ``skip`` matching requests through,
then strikes ``times`` times (-1: until cleared), then leaves the queue. Later
faults for the same path wait their turn, so ``inject(a, b)`` means "a, then b".

Wire kinds (``server`` performs them; any path):
    status    answer ``status`` with a realistic body, ``Retry-After: retry_after`` if set
    html      an HTML error page (a proxy's) with ``status`` (default 502)
    slow      sleep ``delay`` seconds, then answer normally
    reset     send headers and half the body, then abort the TCP connection (RST)
    truncate  a 200 whose JSON is cut in half, Content-Length matching what is sent
Header kinds (a normal answer, with rate-limit headers no Zendesk documents):
    long_reset    X-Rate-Limit-Remaining 0 with ratelimit-reset 3600 (the window is a minute)
    tiny_limit    X-Rate-Limit 1 (no plan's limit is below 200 a minute)
Query kinds (the answer breaks a promise of the query; cursor mode):
    descending         the sort is ignored: Zendesk's default order, newest first, from the
                       newest, or on from the request's cursor if it is of that order (one a
                       descending answer gave: with ``times`` 2 or more, consecutive answers
                       walk on newest first, as such a server would; its cursors are for
                       that order). A query that asks for newest first is answered as asked.
    ascending          the sort ignored the other way: oldest first (a downward reader's
                       query, ``sort=-created_at``, answered as an upward one's), on from
                       the request's cursor if it is of that order. A query that asks for
                       oldest first is answered as asked.
    next_link_query    links.next changes the query per ``field``: ``created_at`` (the
                       default: the start moved to 40 minutes after the page's last
                       record), ``sort`` (dropped) or ``filter`` (``filter[action][]=login``
                       added); after_cursor unchanged
    nonce_cursor_loop  after_cursor / links.next lead back to where this page began, with
                       a fresh nonce each time: the same page again, never the same cursor
    repeat_page        a page asked with a cursor holds the records of the page that cursor
                       came from, with its own meta and links (its cursor on past the
                       records it stands for); audit log only
Page kinds (applied here to a successful list page; cursor kinds need cursor mode):
    repeat_cursor  after_cursor / links.next = the cursor the request came with
                   (on a first page: a cursor that leads to the same first page)
    foreign_next   links.next on https://evil.example.net, after_cursor null
    no_cursor      has_more true, after_cursor and links.next null
    empty_page     no records, has_more true, a cursor that resumes where this page began
    false_end      a full page with more to come says has_more false (links.next null; its
                   after_cursor kept, as on Zendesk's own last pages)
    cursorless_end as false_end, its after_cursor null too: nothing to confirm it with
    shuffle        the page's records in a different order
    out_of_window  one more record, dated 2099-01-01T00:00:00Z, at the end of the page
    duplicate      the first ``count`` records appear twice, each next to itself
    mangle         the first ``count`` records altered per ``mangle`` (``field`` overrides
                   the field touched): missing_field, null_field, extra_field,
                   wrong_type, bad_created_at, no_id, string_id, out_of_window
Mangling alters only the response; the stored records stay as they were.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from zendesk_sim.audit.listing import LinkBuilder, Page, start_cursor
from zendesk_sim.audit.query import MAX_PAGE_SIZE
from zendesk_sim.wire import cursor as cursors
from zendesk_sim.wire.timestamps import format_ts

WIRE_KINDS = frozenset({"status", "html", "slow", "reset", "truncate"})
HEADER_KINDS = frozenset({"long_reset", "tiny_limit"})
CURSOR_KINDS = frozenset(
    {"repeat_cursor", "foreign_next", "no_cursor", "empty_page", "next_link_query",
     "nonce_cursor_loop", "false_end", "cursorless_end"}
)  # fmt: skip
RECORD_KINDS = frozenset({"shuffle", "duplicate", "mangle", "out_of_window"})
SORT_ORDERS = {"descending": "-", "ascending": ""}  # the sort ignored: the order answered
SORT_KINDS = frozenset(SORT_ORDERS)
KINDS = WIRE_KINDS | HEADER_KINDS | CURSOR_KINDS | RECORD_KINDS | SORT_KINDS | {"repeat_page"}
BODY_KINDS = CURSOR_KINDS | RECORD_KINDS
"""Kinds that may alter a list page's body (wire kinds alter only how it is sent)."""

# mangle -> (default field, what to do to it)
MANGLES = {
    "missing_field": "actor_name",
    "null_field": "change_description",
    "extra_field": "new_field",
    "wrong_type": "actor_id",
    "bad_created_at": "created_at",
    "no_id": "id",
    "string_id": "id",
    "out_of_window": "created_at",
}
FOREIGN_HOST = "https://evil.example.net"
LINK_CHANGES = ("created_at", "sort", "filter")  # next_link_query's ``field``
FAR_FUTURE = "2099-01-01T00:00:00Z"
LINK_START_SHIFT = 40 * 60  # seconds: next_link_query's created_at start, past the page


@dataclass(frozen=True)
class Fault:
    kind: str
    times: int = 1
    skip: int = 0
    path: str = "/api/v2/audit_logs"
    """Exact path (a trailing ``.json`` is ignored), a prefix ending in ``*``, or ``*``."""
    status: int | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    mangle: str = "missing_field"
    field: str | None = None
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(KINDS)}")
        if self.kind == "status" and self.status is None:
            raise ValueError("a 'status' fault needs status=")
        if self.kind == "mangle" and self.mangle not in MANGLES:
            raise ValueError(f"unknown mangle {self.mangle!r}; one of {sorted(MANGLES)}")
        if self.times == 0 or self.times < -1 or self.skip < 0 or self.count < 1:
            raise ValueError("times must be >= 1 or -1, skip >= 0, count >= 1")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.kind == "next_link_query" and self.field not in (None, *LINK_CHANGES):
            raise ValueError(f"next_link_query's field is one of {LINK_CHANGES}")

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Fault:
        """A fault from its JSON form (the control endpoint); ValueError if invalid."""
        known = {f.name for f in fields(cls)}
        unknown = set(spec) - known
        if unknown or "kind" not in spec:
            raise ValueError(f"fault spec needs 'kind' and only {sorted(known)}")
        try:
            return cls(**spec)
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    def matches(self, path: str) -> bool:
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path.removesuffix(".json") == self.path.removesuffix(".json")


def ignoring_sort(params: Mapping[str, list[str]], order: str) -> dict[str, list[str]]:
    """``params`` as read by a server that ignores the sort (``descending``, ``ascending``):
    sorted by ``order`` (e.g. ``-created_at``), on from ``page[after]`` unless that cursor
    is of the other order (then from the first: the cursor is not of the server's
    order); still a cursor query where it was one."""
    read = {k: v for k, v in params.items() if k not in ("page[after]", "page[before]")}
    read["sort"] = [order]
    after = params.get("page[after]")
    if after and _ascending(after[-1]) == (not order.startswith("-")):
        read["page[after]"] = after  # the server's own (or garbled: refused as ever)
    elif "page[size]" not in read and ("page[after]" in params or "page[before]" in params):
        read["page[size]"] = [str(MAX_PAGE_SIZE)]  # as when page[size] is not given
    return read


def _ascending(text: str) -> bool:
    try:
        return not cursors.decode(text).descending
    except ValueError:
        return False


class FaultQueue:
    """Thread-safe: each request takes at most one fault, atomically."""

    def __init__(self) -> None:
        self._queue: list[list[Any]] = []  # [fault, skips left, strikes left]
        self._lock = threading.Lock()

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._queue.extend([fault, fault.skip, fault.times] for fault in faults)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for entry in self._queue:
                fault: Fault = entry[0]
                if not fault.matches(path):
                    continue
                if entry[1] > 0:
                    entry[1] -= 1
                    return None
                if entry[2] > 0:
                    entry[2] -= 1
                    if entry[2] == 0:
                        self._queue.remove(entry)
                return fault
            return None

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)


def mangle(
    record: dict[str, Any],
    how: str,
    field: str | None,
    *,
    names: Mapping[str, str] = MANGLES,
    wrong_id: object = "abc",
) -> None:
    """Break one promise about ``record`` in place: ``how`` is a key of ``names`` (the
    field each mangle touches unless ``field`` says), ``wrong_id`` the id of the wrong type
    (a string where the audit log's is an integer; the access log's is a string)."""
    name = field or names[how]
    if how in ("missing_field", "no_id"):
        record.pop(name, None)
    elif how == "null_field":
        record[name] = None
    elif how == "extra_field":
        record[name] = {"added_by": "a future API version", "values": [1, 2.5, None]}
    elif how == "wrong_type":
        value = record.get(name)
        record[name] = f"{value}x" if isinstance(value, int) else 12345
    elif how == "bad_created_at":
        record[name] = "yesterday"
    elif how == "string_id":
        record[name] = wrong_id
    elif how == "out_of_window":
        record[name] = "2001-01-01T00:00:00Z"  # valid, but outside any window asked for


def reorder(fault: Fault, records: list[dict[str, Any]]) -> bool:
    """Shuffle or duplicate a page's records in place, the same on either log; whether
    ``fault`` was one of those."""
    if fault.kind == "shuffle":
        if len(records) > 1:
            original = list(records)
            random.Random(len(records)).shuffle(records)
            if records == original:  # a shuffle that changes nothing would not be a fault
                records.reverse()
        return True
    if fault.kind == "duplicate":
        for position in range(min(fault.count, len(records)) - 1, -1, -1):
            records.insert(position + 1, dict(records[position]))
        return True
    return False


def foreign_link(path: str, target: str) -> str:
    """``foreign_next``'s link: the log's ``path`` and a cursor, on another host."""
    return f"{FOREIGN_HOST}{path}?page%5Bafter%5D={quote(target, '')}"


def apply_to_records(fault: Fault, records: list[dict[str, Any]]) -> None:
    """Shuffle, duplicate or mangle a list of records in place (other kinds: no-op)."""
    if reorder(fault, records):
        return
    if fault.kind == "mangle":
        for record in records[: fault.count]:
            mangle(record, fault.mangle, fault.field)
    elif fault.kind == "out_of_window" and records:
        last = records[-1]
        stray = int(last["id"]) + 1 if isinstance(last.get("id"), int) else 1
        records.append({**last, "id": stray, "created_at": FAR_FUTURE})


def apply_to_cursor_page(fault: Fault, body: dict[str, Any], page: Page, link: LinkBuilder) -> None:
    """Make a cursor-mode body misbehave per ``fault`` (in place)."""
    apply_to_records(fault, body["audit_logs"])
    if fault.kind not in CURSOR_KINDS:
        return
    meta, links = body["meta"], body["links"]
    if fault.kind == "repeat_cursor":
        again = page.query.after_text or start_cursor(page)
        if again is not None:
            meta.update(has_more=True, after_cursor=again)
            links["next"] = link("page[after]", again)
    elif fault.kind == "foreign_next":
        target = meta["after_cursor"] or start_cursor(page) or ""
        meta.update(has_more=True, after_cursor=None)
        links["next"] = foreign_link("/api/v2/audit_logs", target)
    elif fault.kind in ("false_end", "cursorless_end") and meta["has_more"]:
        meta["has_more"] = False
        links["next"] = None
        if fault.kind == "cursorless_end":
            meta["after_cursor"] = None
    elif fault.kind == "no_cursor":
        meta.update(has_more=True, after_cursor=None)
        links["next"] = None
    elif fault.kind == "next_link_query" and links.get("next"):
        links["next"] = _changed_link(links["next"], fault.field or "created_at", page)
    elif fault.kind == "nonce_cursor_loop":
        again = start_cursor(page)
        if again is not None:
            meta.update(has_more=True, after_cursor=again)
            links["next"] = link("page[after]", again)
    elif fault.kind == "empty_page":
        resume = start_cursor(page)
        if resume is not None:
            body["audit_logs"] = []
            meta.update(has_more=True, after_cursor=resume, before_cursor=None)
            links.update(next=link("page[after]", resume), prev=None)


def _changed_link(url: str, change: str, page: Page) -> str:
    """``url`` (a next link) with its query changed as ``next_link_query`` says."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if change == "sort":
        pairs = [(k, v) for k, v in pairs if k != "sort"]
    elif change == "filter":
        pairs.append(("filter[action][]", "login"))
    else:
        bounds = [i for i, (k, _) in enumerate(pairs) if k == "filter[created_at][]"]
        if bounds and page.keys:
            later = format_ts(page.keys[-1][0] + LINK_START_SHIFT)
            pairs[bounds[0]] = ("filter[created_at][]", later)
    return urlunsplit(parts._replace(query=urlencode(pairs)))
