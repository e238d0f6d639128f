"""What an answer to one of our log queries must keep to, whatever the server says.

``LogApi`` says how a log's list endpoint is asked (its path, its time field, how a window
and an order are sent): the audit log's and the access log's differ only there, so both
are held to the same promises. ``Query`` is read from our own request (path and params):
the window, the sort order, and the parameters a next link may not change. The checks raise
CorruptResponseError (the client retries it; exit 4 when it persists): a record outside
the window or out of order is not proof of anything, and a checkpoint must never move
past what the answer proves (docs/RELIABILITY.md, "What the job trusts of an answer").
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from etl.common.clock import format_time
from etl.common.errors import CorruptResponseError
from etl.common.redact import redact_url, snippet
from etl.records.audit import parse_created_at

CREATED_AT = "filter[created_at][]"
AFTER = "page[after]"


@dataclass(frozen=True)
class LogApi:
    """How one log's list endpoint is asked, and what its answers hold."""

    path: str  # e.g. /api/v2/audit_logs
    records_key: str  # the answer's list, e.g. audit_logs
    time_field: str  # each record's time, e.g. created_at
    start_param: str  # the window's bounds, both inclusive (the same name twice: in order)
    end_param: str
    sort_field: str  # ``sort`` ascending by it; ``-`` before it: newest first (the default)

    def window(self, start: datetime, end: datetime) -> list[tuple[str, str]]:
        """The parameters that ask for ``start..end`` (whole seconds)."""
        return [(self.start_param, format_time(start)), (self.end_param, format_time(end))]

    def sort(self, descending: bool) -> tuple[str, str]:
        return ("sort", f"-{self.sort_field}" if descending else self.sort_field)

    def bounds(self, params: Sequence[tuple[str, str]]) -> tuple[datetime | None, datetime | None]:
        """The window ``params`` ask for (None where a bound is not given or unreadable)."""
        if self.start_param == self.end_param:
            given = [parse_created_at(v) for k, v in params if k == self.start_param]
            return (given[0], given[1]) if len(given) == 2 else (None, None)
        starts = [v for k, v in params if k == self.start_param]
        ends = [v for k, v in params if k == self.end_param]
        return (
            parse_created_at(starts[-1]) if starts else None,
            parse_created_at(ends[-1]) if ends else None,
        )

    def time_of(self, record: object) -> datetime | None:
        """A record's usable time, to the second (what bounds and proofs are made of)."""
        if not isinstance(record, dict):
            return None
        moment = parse_created_at(record.get(self.time_field))
        # replace() only where there is a fraction: Zendesk's times have none, and every
        # record's time is read here twice or more
        return moment.replace(microsecond=0) if moment and moment.microsecond else moment


AUDIT_LOGS_API = LogApi(
    "/api/v2/audit_logs", "audit_logs", "created_at", CREATED_AT, CREATED_AT, "created_at"
)
# Undocumented but its order and cursors (shared/reference/access-logs.md): held to the
# same promises, so what the answers do not keep is refused, not guessed at.
ACCESS_LOGS_API = LogApi(
    "/api/v2/access_logs", "access_logs", "timestamp", "filter[start]", "filter[end]", "timestamp"
)


@dataclass(frozen=True)
class Query:
    """What our own request asked for: the promises every answer to it is held to."""

    path: str
    params: tuple[tuple[str, str], ...]  # as sent, without page[after]
    start: datetime | None  # the window's bounds, both inclusive; None: not given
    end: datetime | None
    descending: bool  # sort=-created_at, Zendesk's default when sort is not given
    api: LogApi = AUDIT_LOGS_API

    @classmethod
    def of(cls, api: LogApi, params: Sequence[tuple[str, str]]) -> Query:
        base = tuple((k, v) for k, v in params if k != AFTER)
        start, end = api.bounds(base)
        if start is None or end is None:
            start = end = None
        sorts = [v for k, v in base if k == "sort"]
        descending = (sorts[-1] if sorts else "-").startswith("-")
        return cls(api.path, base, start, end, descending, api)

    def before(self, a: datetime, b: datetime) -> bool:
        """``a`` comes strictly before ``b`` in this query's order."""
        return a > b if self.descending else a < b


def created_at_of(record: object) -> datetime | None:
    """An audit record's usable created_at, to the second (what is stored), or None."""
    return AUDIT_LOGS_API.time_of(record)


def dated(records: Sequence[Any], api: LogApi = AUDIT_LOGS_API) -> list[tuple[datetime, Any]]:
    """(time, id) of each record with a usable time, in order."""
    found = []
    for record in records:
        moment = api.time_of(record)
        if moment is not None:
            found.append((moment, record.get("id")))
    return found


def check_records(records: Sequence[Any], query: Query, after: datetime | None, where: str) -> None:
    """Every dated record inside the window and in the query's order, after ``after``."""
    previous = after
    for moment, record_id in dated(records, query.api):
        if (query.start is not None and moment < query.start) or (
            query.end is not None and moment > query.end
        ):
            raise CorruptResponseError(
                f"{where}: record {snippet(str(record_id), 30)} {query.api.time_field} "
                f"{format_time(moment)}"
                f" is outside the requested window {format_time(query.start or moment)}.."
                f"{format_time(query.end or moment)}; not proof of anything"
            )
        if previous is not None and query.before(moment, previous):
            order = "newest first" if query.descending else "oldest first"
            raise CorruptResponseError(
                f"{where}: records out of order (sort asked {order}): "
                f"{format_time(moment)} after {format_time(previous)}"
            )
        previous = moment


def check_repeat(
    records: Sequence[Any], query: Query, after: datetime | None, read: Set[object], where: str
) -> None:
    """A page whose every record this query has read already (at ``after``, the furthest
    time before it: an earlier one is out of order) was sent in place of the next one:
    its cursor may have passed records it never sent. ``read``: the ids read at ``after``."""
    if not records or after is None or not read:
        return
    for record in records:
        record_id = record.get("id") if isinstance(record, dict) else None
        if query.api.time_of(record) != after or not isinstance(record_id, int | str):
            return
        if record_id not in read:
            return
    raise CorruptResponseError(
        f"{where}: every record of the page was read on an earlier page of this query "
        f"({len(records)} at {format_time(after)}): a page repeated, its cursor not to be "
        "trusted"
    )


def check_end(records: int, size: int, has_more: bool, confirmable: bool, where: str) -> None:
    """A full page (``size`` records or more) that says it is the last must keep a cursor
    not yet asked (``confirmable``), to be confirmed with (``pagination.iter_pages``):
    Zendesk's last pages keep their after_cursor, and taken at its word such a page would
    have the rest of the window (a backfill's slice, a run's window to its end) read, and
    lost for good."""
    if not has_more and records >= size and not confirmable:
        raise CorruptResponseError(
            f"{where}: a full page says it is the last (has_more false) with no cursor not "
            "yet asked to confirm it; what follows is not proven absent"
        )


def link_cursor(link: str) -> str | None:
    """``page[after]`` of a link, decoded as a query component (a ``+`` stays one)."""
    for pair in urlsplit(link).query.split("&"):
        name, _, value = pair.partition("=")
        if unquote(name) == AFTER and value:
            return unquote(value)
    return None


def check_link(link: str, base_url: str, query: Query, where: str) -> None:
    """A next link of ours must be our request plus a cursor: same path, same query."""
    path = urlsplit(base_url).path.rstrip("/") + query.path
    if urlsplit(link).path.removesuffix(".json") != path.removesuffix(".json"):
        raise CorruptResponseError(
            f"{where}: links.next {redact_url(link)} names another path than the request's"
        )
    theirs = _normalized(parse_qsl(urlsplit(link).query, keep_blank_values=True), query.api)
    mine = _normalized(query.params, query.api)
    changed = sorted(
        name
        for name in {k for k, _ in theirs} | {k for k, _ in mine}
        if [p for p in theirs if p[0] == name] != [p for p in mine if p[0] == name]
    )
    if changed:
        raise CorruptResponseError(
            f"{where}: links.next would change the query ({', '.join(changed)}); "
            "continuation is the original request plus the cursor"
        )


def _normalized(pairs: Sequence[tuple[str, str]], api: LogApi) -> list[tuple[str, str]]:
    """A query's parameters by meaning: times as instants, numbers as numbers, the
    window's bounds in their order, repeated filters in any order; no cursor."""
    bounds: list[tuple[str, str]] = []
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == AFTER:
            continue
        if name in (api.start_param, api.end_param):
            moment = parse_created_at(value)
            bounds.append((name, format_time(moment) if moment is not None else value))
        elif name == "page[size]" and value.strip().isdigit():
            rest.append((name, str(int(value))))
        else:
            rest.append((name, value))
    return bounds + sorted(rest)
