"""What the simulated Zendesk answers to one request, as a ``Response`` value.

Order of checks, as a real edge would apply them: rate limit (a 429 consumes
no fault), then the next matching fault, then routing, authentication and the
endpoint itself. Wire-level faults that need the socket (``reset``,
``truncate``) are returned to ``server`` to perform.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from zendesk_sim.access import endpoint as access
from zendesk_sim.access.records import AccessLog
from zendesk_sim.audit import listing
from zendesk_sim.audit.query import BoundsPolicy, parse_list_query
from zendesk_sim.audit.store import RecordStore
from zendesk_sim.edge.auth import Authenticator
from zendesk_sim.edge.faults import (
    BODY_KINDS,
    SORT_ORDERS,
    Fault,
    FaultQueue,
    apply_to_cursor_page,
    apply_to_records,
    ignoring_sort,
)
from zendesk_sim.edge.ratelimit import RateLimiter
from zendesk_sim.wire.responses import (
    NOT_FOUND,
    ApiError,
    Response,
    html_response,
    json_response,
    json_text_response,
    status_response,
    text_response,
)

log = logging.getLogger(__name__)

_LIST = re.compile(r"\A/api/v2/audit_logs(?:\.json)?\Z")
_SHOW = re.compile(r"\A/api/v2/audit_logs/([^/]+?)(?:\.json)?\Z")
_ACCESS = re.compile(r"\A/api/v2/access_logs(?:\.json)?\Z")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    pairs: list[tuple[str, str]]  # the query string, in order
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    base: str  # scheme://host:port the client used, for links
    params: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        params: dict[str, list[str]] = {}
        for name, value in self.pairs:
            params.setdefault(name, []).append(value)
        object.__setattr__(self, "params", params)


class App:
    def __init__(
        self,
        store: RecordStore,
        authenticator: Authenticator,
        limiter: RateLimiter,
        faults: FaultQueue,
        policy: BoundsPolicy,
        sleep: Callable[[float], None] = time.sleep,
        access_log: AccessLog | None = None,
        access_addon: bool = True,
    ) -> None:
        self.store = store
        self.access_log = access_log if access_log is not None else AccessLog()
        self.access_addon = access_addon  # False: the account lacks the ADPP add-on (403)
        self.authenticator = authenticator
        self.limiter = limiter
        self.faults = faults
        self.policy = policy
        self._sleep = sleep

    def respond(self, request: Request) -> tuple[Response, Fault | None]:
        counted = request.path.startswith("/api/")
        decision = self.limiter.acquire() if counted else self.limiter.peek()
        fault: Fault | None = None
        if not decision.allowed:
            response = text_response(429, "Too Many Requests")
            response.headers.append(("Retry-After", str(decision.retry_after)))
        else:
            fault = self.faults.take(request.path)
            response = self._faulted_or_routed(request, fault)
        limit, remaining, reset = decision.limit, decision.remaining, decision.reset
        if fault is not None and fault.kind == "long_reset":
            remaining, reset = 0, 3600
        elif fault is not None and fault.kind == "tiny_limit":
            limit = 1
        response.headers.append(("X-Rate-Limit", str(limit)))
        response.headers.append(("X-Rate-Limit-Remaining", str(remaining)))
        response.headers.append(("ratelimit-limit", str(limit)))
        response.headers.append(("ratelimit-remaining", str(remaining)))
        response.headers.append(("ratelimit-reset", str(reset)))
        if fault is not None and fault.retry_after is not None:
            value = fault.retry_after
            shown = str(int(value)) if isinstance(value, float) and value.is_integer() else value
            response.headers.append(("Retry-After", str(shown)))
        return response, fault

    def _faulted_or_routed(self, request: Request, fault: Fault | None) -> Response:
        if fault is not None and fault.kind == "status":
            assert fault.status is not None
            return status_response(fault.status)
        if fault is not None and fault.kind == "html":
            status = fault.status or 502
            return html_response(status, f"{status} Bad Gateway" if status >= 500 else "Error")
        if fault is not None and fault.kind == "slow":
            self._sleep(fault.delay)
        try:
            return self._route(request, fault)
        except ApiError as err:
            return err.response

    def _route(self, request: Request, fault: Fault | None) -> Response:
        if request.path == "/oauth/tokens" and request.method == "POST":
            return self.authenticator.issue(_form(request), request.headers.get("authorization"))
        if _ACCESS.match(request.path) and request.method == "GET":
            return self._access(request, fault)
        list_match = _LIST.match(request.path)
        show_match = _SHOW.match(request.path)
        if request.method != "GET" or not (list_match or show_match):
            return html_response(404, "404 Not Found")
        refused = self.authenticator.check(request.headers.get("authorization"))
        if refused is not None:
            return refused
        if show_match:
            return self._show(show_match.group(1), fault)
        return self._list(request, fault)

    def _access(self, request: Request, fault: Fault | None) -> Response:
        refused = self.authenticator.check(request.headers.get("authorization"))
        if refused is not None:
            return refused
        if not self.access_addon:
            raise access.no_addon_error()
        params = request.params
        if fault is not None and fault.kind in SORT_ORDERS:  # "descending": as if not given
            params = ignoring_sort(params, SORT_ORDERS[fault.kind] + "timestamp")
        query = access.parse_access_query(params)
        link = _link_builder(request, drop=("page[after]", "page[before]"))
        body = access.access_page(self.access_log, query, link)
        if fault is not None:
            access.apply_access_fault(fault, body, query, link)
        return json_response(200, body)

    def _show(self, raw_id: str, fault: Fault | None) -> Response:
        record = self.store.get(int(raw_id)) if raw_id.isdigit() else None
        if record is None:
            return json_response(404, NOT_FOUND)
        if fault is not None:
            records = [record]
            apply_to_records(fault, records)
            record = records[0]
        return json_response(200, {"audit_log": record})

    def _list(self, request: Request, fault: Fault | None) -> Response:
        params = request.params
        if fault is not None and fault.kind in SORT_ORDERS:
            # "descending": as if sort were not given, Zendesk's default order (an offset
            # query reads sort_order, not sort: unchanged, as before).
            params = ignoring_sort(params, SORT_ORDERS[fault.kind] + "created_at")
        query = parse_list_query(params, self.policy, time.time())
        if query.cursor_mode:
            link = _link_builder(request, drop=("page[after]", "page[before]"))
            page = listing.cursor_page(self.store, query)
            fields = listing.cursor_fields(page, link)
        else:
            link = _link_builder(request, drop=("page",))
            page = listing.offset_page(self.store, query)
            fields = listing.offset_fields(self.store, page, link)
        if fault is not None and fault.kind == "repeat_page" and query.cursor_mode:
            before = listing.previous_page(self.store, page)  # in this page's place
            if before is not None:
                return json_text_response(200, listing.encode(self.store, before, fields))
        if fault is None or fault.kind not in BODY_KINDS:
            # The common case, and the simulator's hot path: no record becomes a dict.
            return json_text_response(200, listing.encode(self.store, page, fields))
        body = {"audit_logs": listing.materialize(self.store, page), **fields}
        if query.cursor_mode:
            apply_to_cursor_page(fault, body, page, link)
        else:
            apply_to_records(fault, body["audit_logs"])
        return json_response(200, body)


def _link_builder(request: Request, drop: tuple[str, ...]) -> listing.LinkBuilder:
    """Links carry every original parameter except the page position being replaced."""
    kept = tuple((name, value) for name, value in request.pairs if name not in drop)
    prefix = f"{request.base}{request.path}?{_query_prefix(kept)}"

    def link(name: str, value: str) -> str:
        return prefix + urlencode([(name, value)])

    return link


@lru_cache(maxsize=256)
def _query_prefix(kept: tuple[tuple[str, str], ...]) -> str:
    """``urlencode`` of ``kept`` and the ``&`` before one more parameter (if any are kept).

    Cached: every page of one query keeps the same parameters (the cursor is dropped).
    """
    return urlencode(kept) + "&" if kept else ""


def _form(request: Request) -> dict[str, str]:
    """An OAuth token request body: JSON or form-encoded (last value of each key wins)."""
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            payload: Any = json.loads(request.body or b"{}")
        except ValueError:
            return {}
        if not isinstance(payload, dict):
            return {}
        return {str(k): str(v) for k, v in payload.items() if v is not None}
    return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
