"""``GET /api/v2/audit_logs`` query parameters -> a validated ``ListQuery``.

Validation follows the reference: ``filter[created_at]`` exactly twice, each
``YYYY-MM-DDTHH:MM:SSZ``; ``filter[source_id]`` only with ``filter[source_type]``;
``page[size]`` clamped to 100 (the documented maximum; what Zendesk does above it
is undocumented); offset pages beyond 100 refused. Unknown parameters are
ignored, as Zendesk does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zendesk_sim.audit.store import HIGHEST, LOWEST
from zendesk_sim.wire import cursor as cursors
from zendesk_sim.wire.cursor import Cursor, Key
from zendesk_sim.wire.responses import (
    CREATED_AT_FILTER_ERROR,
    ApiError,
    invalid_pagination,
    invalid_value,
)
from zendesk_sim.wire.timestamps import parse_ts

FILTER_FIELDS = ("source_type", "source_id", "actor_id", "ip_address", "action")
MAX_PAGE_SIZE = 100
MAX_OFFSET_PAGE = 100


@dataclass(frozen=True)
class BoundsPolicy:
    """How the account treats ``filter[created_at]`` (undocumented, so configurable)."""

    inclusive_start: bool = True
    inclusive_end: bool = True
    min_end_age: float = 60.0


@dataclass(frozen=True)
class ListQuery:
    cursor_mode: bool
    descending: bool
    lo: Key = LOWEST  # inclusive bounds on (created_at, id) from filter[created_at]
    hi: Key = HIGHEST
    filters: Mapping[str, frozenset[str]] = field(default_factory=dict)
    size: int = MAX_PAGE_SIZE
    after: Cursor | None = None
    before: Cursor | None = None
    after_text: str | None = None  # the cursor as the client sent it
    page: int = 1

    def matches(self, record: Mapping[str, Any]) -> bool:
        """True if the record passes every filter other than created_at."""
        for name, wanted in self.filters.items():
            value = record.get(name)
            if value is None or isinstance(value, bool) or str(value) not in wanted:
                return False
        return True


def _values(params: Mapping[str, list[str]], name: str) -> list[str]:
    """Both spellings: ``name[]`` (repeatable) and plain ``name``."""
    return params.get(f"{name}[]", []) + params.get(name, [])


def _int_param(params: Mapping[str, list[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise invalid_pagination(f"{name} must be an integer") from None


def _created_at_bounds(
    params: Mapping[str, list[str]], policy: BoundsPolicy, now: float
) -> tuple[Key, Key]:
    values = _values(params, "filter[created_at]")
    if not values:
        return LOWEST, HIGHEST
    if len(values) != 2:
        raise ApiError(400, CREATED_AT_FILTER_ERROR)
    try:
        start, end = parse_ts(values[0]), parse_ts(values[1])
    except ValueError:
        raise ApiError(400, CREATED_AT_FILTER_ERROR) from None
    if policy.min_end_age > 0 and end > now - policy.min_end_age:
        raise invalid_value(
            "Invalid filter[created_at] specified; the end time must be at least "
            f"{policy.min_end_age:g} seconds in the past"
        )
    first = start if policy.inclusive_start else start + 1
    last = end if policy.inclusive_end else end - 1
    return (first, LOWEST[1]), (last, HIGHEST[1])


def _filters(params: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    found = {
        name: frozenset(values)
        for name in FILTER_FIELDS
        if (values := _values(params, f"filter[{name}]"))
    }
    if "source_id" in found and "source_type" not in found:
        raise invalid_value("filter[source_id] requires filter[source_type]")
    return found


def _cursor(params: Mapping[str, list[str]], name: str, descending: bool) -> Cursor | None:
    values = params.get(name)
    if values is None:
        return None
    try:
        cursor = cursors.decode(values[-1])
    except ValueError:
        raise invalid_pagination(f"Invalid {name} cursor") from None
    if cursor.descending != descending:
        raise invalid_pagination(f"{name} cursor was issued for another sort order")
    return cursor


def parse_list_query(
    params: Mapping[str, list[str]], policy: BoundsPolicy, now: float
) -> ListQuery:
    """Raises ApiError (400) for what Zendesk refuses."""
    lo, hi = _created_at_bounds(params, policy, now)
    filters = _filters(params)
    if any(name in params for name in ("page[size]", "page[after]", "page[before]")):
        sort = params.get("sort", ["-created_at"])[-1]
        if sort not in ("created_at", "-created_at"):
            raise invalid_value("sort must be created_at or -created_at")
        descending = sort.startswith("-")
        size = _int_param(params, "page[size]", MAX_PAGE_SIZE)
        if size < 1:
            raise invalid_pagination("page[size] must be a positive integer")
        after = _cursor(params, "page[after]", descending)
        before = _cursor(params, "page[before]", descending)
        if after is not None and before is not None:
            raise invalid_pagination("page[after] and page[before] cannot be combined")
        return ListQuery(
            cursor_mode=True,
            descending=descending,
            lo=lo,
            hi=hi,
            filters=filters,
            size=min(size, MAX_PAGE_SIZE),
            after=after,
            before=before,
            after_text=params["page[after]"][-1] if after is not None else None,
        )
    if params.get("sort_by", ["created_at"])[-1] != "created_at":
        raise invalid_value("sort_by must be created_at")
    order = params.get("sort_order", ["desc"])[-1]
    if order not in ("asc", "desc"):
        raise invalid_value("sort_order must be asc or desc")
    page = _int_param(params, "page", 1)
    per_page = _int_param(params, "per_page", MAX_PAGE_SIZE)
    if page < 1 or per_page < 1:
        raise invalid_pagination("page and per_page must be positive integers")
    if page > MAX_OFFSET_PAGE:
        raise invalid_pagination(
            f"Offset pagination is limited to {MAX_OFFSET_PAGE} pages; use cursor pagination"
        )
    return ListQuery(
        cursor_mode=False,
        descending=order == "desc",
        lo=lo,
        hi=hi,
        filters=filters,
        size=min(per_page, MAX_PAGE_SIZE),
        page=page,
    )
