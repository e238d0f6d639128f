"""``/_sim/*``: drive a simulator running as a separate process (demo, benchmarks).

    POST /_sim/records[?visible_after=S]  body: JSON list of records  -> {"added": n}
    POST /_sim/faults                     body: JSON list of Fault specs -> {"queued": n}
    POST /_sim/faults/clear               drop every queued fault
    GET  /_sim/stats                      request counts by status, 429s, visible records
    POST /_sim/reset-log                  forget the request log (and so the stats)

No authentication: the server listens on loopback only. Control requests are not
rate limited, faulted or logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from zendesk_sim.edge.faults import Fault
from zendesk_sim.web.app import Request
from zendesk_sim.wire.responses import Response, html_response, json_response


class Controlled(Protocol):
    """What ``/_sim/*`` drives; ``server.SimulatedZendesk`` is one (no import back to it)."""

    def add_records(
        self, records: Iterable[Mapping[str, Any]], visible_after: float = 0.0
    ) -> int: ...
    def inject(self, *faults: Fault) -> None: ...
    def clear_faults(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def clear_log(self) -> None: ...


def _bad(description: str) -> Response:
    return json_response(400, {"error": "InvalidSimRequest", "description": description})


def _json_list(request: Request) -> list[Any]:
    payload = json.loads(request.body or b"null")
    if not isinstance(payload, list):
        raise ValueError("body must be a JSON list")
    return payload


def handle(sim: Controlled, request: Request) -> Response:
    route = (request.method, request.path)
    try:
        if route == ("POST", "/_sim/records"):
            visible_after = float(request.params.get("visible_after", ["0"])[-1])
            records = _json_list(request)
            if not all(isinstance(record, dict) for record in records):
                raise ValueError("every record must be a JSON object")
            return json_response(200, {"added": sim.add_records(records, visible_after)})
        if route == ("POST", "/_sim/faults"):
            specs = _json_list(request)
            faults = [Fault.from_spec(spec) for spec in specs if isinstance(spec, dict)]
            if len(faults) != len(specs):
                raise ValueError("every fault spec must be a JSON object")
            sim.inject(*faults)
            return json_response(200, {"queued": len(faults)})
        if route == ("POST", "/_sim/faults/clear"):
            sim.clear_faults()
            return json_response(200, {"ok": True})
        if route == ("GET", "/_sim/stats"):
            return json_response(200, sim.stats())
        if route == ("POST", "/_sim/reset-log"):
            sim.clear_log()
            return json_response(200, {"ok": True})
    except ValueError as exc:  # includes json.JSONDecodeError
        return _bad(str(exc))
    return html_response(404, "404 Not Found")
