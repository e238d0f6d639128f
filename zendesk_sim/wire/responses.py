"""Responses as values, and the error bodies Zendesk sends (see shared/reference/README.md).

Handlers build a ``Response``; only ``server`` writes it to the socket, so faults
can alter a response before it goes out.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"

CREATED_AT_FILTER_ERROR = {
    "error": "InvalidValue",
    "description": (
        "Invalid filter[created_at] specified; format is "
        "?filter[created_at][]=YYYY-MM-DDTHH:MM:SSZ&filter[created_at][]=YYYY-MM-DDTHH:MM:SSZ"
    ),
}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
UNAUTHENTICATED = {"error": "Couldn't authenticate you"}
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": (
        "The access token provided is expired, revoked, malformed or invalid for other reasons."
    ),
}
MISSING_SCOPE = {
    "error": "Forbidden",
    "description": "You are missing the following required scopes: read",
}
NOT_ADMIN = {
    "error": "Forbidden",
    "description": "You do not have access to this page. Please contact the account owner of "
    "this help desk for further help.",
}

_STATUS_BODIES: dict[int, dict[str, Any] | str] = {
    400: {"error": "InvalidValue", "description": "Invalid request parameters"},
    401: UNAUTHENTICATED,
    403: NOT_ADMIN,
    404: NOT_FOUND,
    409: {"error": "Conflict", "description": "Request conflicts with a concurrent request"},
    422: {"error": "UnprocessableEntity", "description": "Unprocessable entity"},
    429: "Too Many Requests",
    500: {"error": "InternalServerError", "description": "Something went wrong"},
    502: "Bad Gateway",
    503: {
        "error": "DatabaseTimeout",
        "description": "The database timed out while processing your request. Please try again.",
    },
    504: "Gateway Timeout",
}


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: list[tuple[str, str]] = field(default_factory=list)


def compact_json(payload: object) -> str:
    """The JSON text of a body (or of a part of one: the encoding is compositional)."""
    # ensure_ascii=False: Zendesk sends UTF-8, and clients must decode it as such.
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def json_response(status: int, payload: object) -> Response:
    try:
        return Response(status, compact_json(payload).encode("utf-8"))
    except UnicodeEncodeError:
        # A lone surrogate is no UTF-8: it can only travel as JSON's escape (\ud800), as it would.
        return Response(status, json.dumps(payload, separators=(",", ":")).encode("ascii"))


def json_text_response(status: int, text: str) -> Response:
    """``json_response`` for a body already encoded by ``compact_json`` (whole or in parts)."""
    try:
        return Response(status, text.encode("utf-8"))
    except UnicodeEncodeError:
        # As in json_response; decoding gives back the payload (rare: added records only).
        return json_response(status, json.loads(text))


def text_response(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), TEXT_TYPE)


def html_response(status: int, title: str) -> Response:
    page = (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body><h1>{title}</h1>"
        "<p>The page you were looking for doesn't exist or is unavailable.</p></body></html>\n"
    )
    return Response(status, page.encode("utf-8"), HTML_TYPE)


def status_response(status: int) -> Response:
    """A realistic response for an arbitrary status code (JSON or plain text)."""
    body = _STATUS_BODIES.get(status, {"error": f"HTTP{status}", "description": "Error"})
    if isinstance(body, str):
        return text_response(status, body)
    return json_response(status, body)


class ApiError(Exception):
    """Raised while handling a request to answer with ``response`` instead."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(f"{status} {payload.get('error')}")
        self.response = json_response(status, payload)


def invalid_pagination(description: str) -> ApiError:
    return ApiError(400, {"error": "InvalidPaginationParameter", "description": description})


def invalid_value(description: str) -> ApiError:
    return ApiError(400, {"error": "InvalidValue", "description": description})


# What a real answer of the API carries besides its rate-limit headers (as seen on
# Zendesk's Support API, behind Cloudflare); Date, Server, Content-Type and
# Content-Length are written by the server. Sent so that a client parses as many
# headers here as it does in production.
_STATIC_HEADERS = (
    ("X-Zendesk-API-Version", "v2"),
    ("X-Zendesk-Application-Version", "v17412"),
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Vary", "Accept-Encoding, Origin"),
    ("CF-Cache-Status", "DYNAMIC"),
)
_ORIGIN = f"app{os.getpid() % 64:02d}.pod17.usw2.zdsys.com"


def add_zendesk_headers(response: Response, runtime: float) -> None:
    """The headers every real answer has: ids, caching, security, the runtime it took."""
    request_id = secrets.token_hex(8)
    if response.status == 200:
        digest = hashlib.md5(response.body, usedforsecurity=False).hexdigest()
        response.headers.append(("ETag", f'W/"{digest}"'))
        response.headers.append(("Cache-Control", "max-age=0, private, must-revalidate"))
    else:
        response.headers.append(("Cache-Control", "no-cache"))
    response.headers.extend(_STATIC_HEADERS)
    response.headers.append(("X-Request-Id", f"{request_id}-SJC"))
    response.headers.append(("CF-RAY", f"{request_id}-SJC"))
    response.headers.append(("X-Runtime", f"{runtime:.6f}"))
    response.headers.append(("X-Zendesk-Origin-Server", _ORIGIN))
