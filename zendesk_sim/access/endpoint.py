"""``GET /api/v2/access_logs``: the documented filters, cursor pages, the add-on's 403.

Documented (shared/reference/access-logs.md): ``filter[start]`` and ``filter[end]``
(``YYYY-MM-DDTHH:MM:SSZ``, each optional, both inclusive here), ``filter[path]`` (the
URL path of the object, without its query; a GraphQL access has none) and a user
filter (``filter[user_id]``, the likely name). Not documented, so chosen here: cursor
pagination as on the audit log (``page[size]`` up to 100, ``page[after]``/``page[before]``,
``meta.has_more``, ``meta.after_cursor``, ``links.next``) and newest first unless
``sort=timestamp`` asks for ascending (a client that assumes an order is caught out).
Without the Advanced Data Privacy and Protection add-on every request is a 403.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from zendesk_sim.access.records import AccessLog
from zendesk_sim.audit.store import HIGHEST, LOWEST
from zendesk_sim.edge.faults import FAR_FUTURE, Fault, foreign_link, mangle, reorder
from zendesk_sim.wire import cursor as cursors
from zendesk_sim.wire.cursor import Cursor, Key
from zendesk_sim.wire.responses import ApiError, invalid_pagination, invalid_value
from zendesk_sim.wire.timestamps import parse_ts

ACCESS_LOGS_PATH = "/api/v2/access_logs"
MAX_PAGE_SIZE = 100
NO_ADDON = {
    "error": "Forbidden",
    "description": "The Access Logs API requires the Advanced Data Privacy and Protection add-on.",
}
# The field a ``mangle`` fault touches by default on an access record.
ACCESS_MANGLES = {
    "missing_field": "client",
    "null_field": "summary",
    "extra_field": "new_field",
    "wrong_type": "status",
    "bad_created_at": "timestamp",
    "no_id": "id",
    "string_id": "id",
    "out_of_window": "timestamp",
}

LinkBuilder = Callable[[str, str], str]


@dataclass(frozen=True)
class AccessQuery:
    descending: bool
    lo: Key = LOWEST
    hi: Key = HIGHEST
    paths: frozenset[str] = frozenset()
    users: frozenset[str] = frozenset()
    size: int = MAX_PAGE_SIZE
    after: Cursor | None = None
    after_text: str | None = None
    filters: Mapping[str, str] = field(default_factory=dict)

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.paths:
            url = record.get("url")
            if not isinstance(url, str) or urlsplit(url).path not in self.paths:
                return False
        return not self.users or str(record.get("user_id")) in self.users


def _bound(params: Mapping[str, list[str]], name: str) -> int | None:
    values = params.get(name)
    if not values:
        return None
    try:
        return parse_ts(values[-1])
    except ValueError:
        raise invalid_value(f"Invalid {name} specified; format is YYYY-MM-DDTHH:MM:SSZ") from None


def parse_access_query(params: Mapping[str, list[str]]) -> AccessQuery:
    """Raises ApiError (400) for what the simulated Zendesk refuses."""
    start, end = _bound(params, "filter[start]"), _bound(params, "filter[end]")
    sort = params.get("sort", ["-timestamp"])[-1]
    if sort not in ("timestamp", "-timestamp"):
        raise invalid_value("sort must be timestamp or -timestamp")
    descending = sort.startswith("-")
    try:
        size = int(params.get("page[size]", [str(MAX_PAGE_SIZE)])[-1])
    except ValueError:
        raise invalid_pagination("page[size] must be an integer") from None
    if size < 1:
        raise invalid_pagination("page[size] must be a positive integer")
    after_text = params["page[after]"][-1] if "page[after]" in params else None
    after = None
    if after_text is not None:
        try:
            after = cursors.decode(after_text)
        except ValueError:
            raise invalid_pagination("Invalid page[after] cursor") from None
        if after.descending != descending:
            raise invalid_pagination("page[after] cursor was issued for another sort order")
    return AccessQuery(
        descending=descending,
        lo=(start, LOWEST[1]) if start is not None else LOWEST,
        hi=(end, HIGHEST[1]) if end is not None else HIGHEST,
        paths=frozenset(params.get("filter[path]", [])),
        users=frozenset(params.get("filter[user_id]", [])),
        size=min(size, MAX_PAGE_SIZE),
        after=after,
        after_text=after_text,
    )


def access_page(log: AccessLog, query: AccessQuery, link: LinkBuilder) -> dict[str, Any]:
    """One page of ``query``: ``access_logs``, ``meta`` and ``links``."""
    lo, hi = query.lo, query.hi
    if query.after is not None:
        edge = query.after.key
        if query.descending:
            hi = min(hi, (edge[0], edge[1] - 1))
        else:
            lo = max(lo, (edge[0], edge[1] + 1))
    entries = (e for e in log.scan(lo, hi, descending=query.descending) if query.matches(e[1]))
    taken = list(islice(entries, query.size + 1))
    more = len(taken) > query.size
    del taken[query.size :]
    after = cursors.encode(Cursor(taken[-1][0], query.descending)) if taken else None
    before = cursors.encode(Cursor(taken[0][0], query.descending)) if taken else None
    return {
        "access_logs": [record for _, record in taken],
        "meta": {"has_more": more, "after_cursor": after, "before_cursor": before},
        "links": {
            "next": link("page[after]", after) if after and more else None,
            "prev": link("page[before]", before) if before and query.after else None,
        },
    }


def apply_access_fault(
    fault: Fault, body: dict[str, Any], query: AccessQuery, link: LinkBuilder
) -> None:
    """Make an access page misbehave per ``fault`` (in place), as the audit log's do."""
    records: list[dict[str, Any]] = body["access_logs"]
    meta, links = body["meta"], body["links"]
    if reorder(fault, records):
        return
    if fault.kind == "mangle":
        for record in records[: fault.count]:  # string_id: an integer, the id being a string
            mangle(record, fault.mangle, fault.field, names=ACCESS_MANGLES, wrong_id=12345)
    elif fault.kind == "repeat_cursor" and query.after_text is not None:
        meta.update(has_more=True, after_cursor=query.after_text)
        links["next"] = link("page[after]", query.after_text)
    elif fault.kind == "foreign_next":
        target = meta["after_cursor"] or ""
        meta.update(has_more=True, after_cursor=None)
        links["next"] = foreign_link(ACCESS_LOGS_PATH, target)
    elif fault.kind == "no_cursor":
        meta.update(has_more=True, after_cursor=None)
        links["next"] = None
    elif fault.kind == "next_link_query" and links.get("next"):
        # The start moved past the page's last record (or the sort dropped): a link that
        # would skip records if followed; after_cursor unchanged.
        parts = urlsplit(links["next"])
        pairs = [(k, v) for k, v in parse_qsl(parts.query) if k != "filter[start]"]
        if (fault.field or "created_at") == "sort":
            pairs = [(k, v) for k, v in pairs if k != "sort"]
        else:
            pairs.append(("filter[start]", "2099-01-01T00:00:00Z"))
        links["next"] = urlunsplit(parts._replace(query=urlencode(pairs)))
    elif fault.kind == "out_of_window":
        late = dict(records[-1]) if records else {"id": "01LATE"}
        records.append({**late, "id": f"{late.get('id')}-late", "timestamp": FAR_FUTURE})
    elif fault.kind == "empty_page" and query.after is not None:
        # A fresh cursor string for the position this page started from: the same records next.
        after = query.after
        resume = cursors.encode(Cursor(after.key, after.descending, after.salt + 1))
        body["access_logs"] = []
        meta.update(has_more=True, after_cursor=resume, before_cursor=None)
        links.update(next=link("page[after]", resume), prev=None)


def no_addon_error() -> ApiError:
    return ApiError(403, NO_ADDON)
