"""What an answer to one of our audit-log queries must keep to, whatever the server says.

``Query`` is read from our own request (path and params): the ``filter[created_at]``
window, the sort order, and the parameters a next link may not change. The checks raise
CorruptResponseError (the client retries it; exit 4 when it persists): a record outside
the window or out of order is not proof of anything, and a checkpoint must never move
past what the answer proves (docs/RELIABILITY.md, "What the job trusts of an answer").
"""

from __future__ import annotations

from collections.abc import Sequence
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
class Query:
    """What our own request asked for: the promises every answer to it is held to."""

    path: str
    params: tuple[tuple[str, str], ...]  # as sent, without page[after]
    start: datetime | None  # filter[created_at] bounds, both inclusive; None: not given
    end: datetime | None
    descending: bool  # sort=-created_at, Zendesk's default when sort is not given

    @classmethod
    def of(cls, path: str, params: Sequence[tuple[str, str]]) -> Query:
        base = tuple((k, v) for k, v in params if k != AFTER)
        bounds = [parse_created_at(v) for k, v in base if k == CREATED_AT]
        start = end = None
        if len(bounds) == 2 and bounds[0] is not None and bounds[1] is not None:
            start, end = bounds[0], bounds[1]
        sorts = [v for k, v in base if k == "sort"]
        descending = (sorts[-1] if sorts else "-created_at").startswith("-")
        return cls(path, base, start, end, descending)

    def before(self, a: datetime, b: datetime) -> bool:
        """``a`` comes strictly before ``b`` in this query's order."""
        return a > b if self.descending else a < b


def created_at_of(record: object) -> datetime | None:
    """A record's usable created_at, to the second (what is stored), or None."""
    if not isinstance(record, dict):
        return None
    moment = parse_created_at(record.get("created_at"))
    return None if moment is None else moment.replace(microsecond=0)


def dated(records: Sequence[Any]) -> list[tuple[datetime, Any]]:
    """(created_at, id) of each record with a usable created_at, in order."""
    found = []
    for record in records:
        moment = created_at_of(record)
        if moment is not None:
            found.append((moment, record.get("id")))
    return found


def check_records(records: Sequence[Any], query: Query, after: datetime | None, where: str) -> None:
    """Every dated record inside the window and in the query's order, after ``after``."""
    previous = after
    for moment, record_id in dated(records):
        if (query.start is not None and moment < query.start) or (
            query.end is not None and moment > query.end
        ):
            raise CorruptResponseError(
                f"{where}: record {snippet(str(record_id), 30)} created_at {format_time(moment)}"
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
    theirs = _normalized(parse_qsl(urlsplit(link).query, keep_blank_values=True))
    mine = _normalized(query.params)
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


def _normalized(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A query's parameters by meaning: times as instants, numbers as numbers, the
    created_at bounds in their order, repeated filters in any order; no cursor."""
    bounds: list[tuple[str, str]] = []
    rest: list[tuple[str, str]] = []
    for name, value in pairs:
        if name == AFTER:
            continue
        if name == CREATED_AT:
            moment = parse_created_at(value)
            bounds.append((name, format_time(moment) if moment is not None else value))
        elif name == "page[size]" and value.strip().isdigit():
            rest.append((name, str(int(value))))
        else:
            rest.append((name, value))
    return bounds + sorted(rest)
