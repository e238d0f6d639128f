"""What an HTTP answer means: ``classify_response``, the single retriable-or-fatal decision.

    2xx + a JSON object          -> the object
    2xx + anything else          -> CorruptResponseError (empty, HTML, truncated, not UTF-8,
                                    not JSON, not an object)
    429, 503 + Retry-After       -> RateLimitedError (Retry-After seconds, 10 s if absent/garbage)
    408, other 5xx, odd statuses -> RetriableError
    401                          -> AuthError (names the auth method and what to check)
    403                          -> AuthError (Enterprise plan, admin user, OAuth scope)
    3xx                          -> RequestRejectedError (redirects are never followed)
    400, 404, other 4xx          -> RequestRejectedError (Zendesk's error/description snippet)

Bodies are decoded strictly (``etl.common.jsonbody``): bytes that are not UTF-8 JSON make the
answer corrupt (never U+FFFD in stored text).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from etl.common.errors import (
    AuthError,
    CorruptResponseError,
    ForbiddenError,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
)
from etl.common.jsonbody import decode_json
from etl.common.redact import error_summary, redact_url, snippet
from etl.zendesk.ratelimit import parse_retry_after

if TYPE_CHECKING:
    import requests

    from etl.zendesk.auth import ZendeskAuth

FORBIDDEN_HINT = (
    "audit logs need the Enterprise plan and an admin user; "
    "with OAuth, the auditlogs:read (or read) scope"
)


def classify_response(
    response: requests.Response, body: bytes | None = None, *, auth: ZendeskAuth | None = None
) -> dict[str, Any]:
    """The JSON object of a successful answer, or the typed error the answer amounts to.

    ``body`` is the answer's body when it was read already (default: ``response.content``).
    """
    content = response.content if body is None else body
    status = response.status_code
    if 200 <= status < 300:
        return _json_body(response, content)
    where = _where(response)
    status_text = _status_text(response)
    said = _zendesk_says(response, content)
    if status == 429 or (status == 503 and response.headers.get("Retry-After")):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimitedError(
            f"{where}: {status_text} (Retry-After {retry_after:g} s)", retry_after
        )
    if status == 408 or status >= 500 or status < 200:
        raise RetriableError(f"{where}: {status_text}{said}")
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        try:
            target = urlsplit(location).hostname or ("the same host" if location else "nowhere")
        except ValueError:
            target = "an unparsable location"
        raise RequestRejectedError(
            f"{where}: {status_text}, a redirect to {snippet(target, 80)}; redirects are not "
            "followed: check base_url (https://SUBDOMAIN.zendesk.com)"
        )
    if status == 401:
        method = auth.method if auth is not None else "the configured credentials"
        check = auth.check if auth is not None else "the credentials"
        raise AuthError(
            f"{where}: {status_text}{said}: Zendesk refused the credentials "
            f"({method}): check {check}"
        )
    if status == 403:
        raise ForbiddenError(f"{where}: {status_text}{said}: {FORBIDDEN_HINT}")
    if status == 404:
        raise RequestRejectedError(f"{where}: {status_text}{said}: check subdomain/base_url")
    hint = ""
    error = _error_object(content)
    if error is not None and error.get("error") == "InvalidPaginationParameter":
        hint = ": Zendesk refused the cursor; the next run restarts from the last checkpoint"
    raise RequestRejectedError(f"{where}: {status_text}{said}{hint}")


def answered(response: requests.Response) -> str:
    """``GET <redacted URL>: <status>``, the start of a message about this answer."""
    return f"{_where(response)}: {_status_text(response)}"


def _where(response: requests.Response) -> str:
    request = response.request
    method = (request.method if request is not None else None) or "GET"
    url = (request.url if request is not None else None) or response.url or "<unknown URL>"
    return f"{method} {redact_url(url)}"


def _status_text(response: requests.Response) -> str:
    reason = response.reason
    if not reason:
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
    return f"{response.status_code} {reason}".strip()


def _looks_like_html(response: requests.Response, content: bytes) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    head = content[:200].lstrip().lower()
    return "html" in content_type or head.startswith((b"<!doctype", b"<html", b"<"))


def _error_object(content: bytes) -> dict[str, Any] | None:
    """An error body as a JSON object, else None (never raises)."""
    try:
        body = decode_json(content)
    except (ValueError, RecursionError):
        return None
    return body if isinstance(body, dict) else None


def _zendesk_says(response: requests.Response, content: bytes) -> str:
    """`` (error: description)`` from the body: a snippet, never the raw body."""
    error = _error_object(content)
    if error is not None:
        summary = error_summary(error)
    elif content and not _looks_like_html(response, content):
        summary = snippet(content[:400], 80)
    else:
        summary = ""
    if summary.lower() in ("", (response.reason or "").lower()):
        return ""
    return f" ({summary})"


def _json_body(response: requests.Response, content: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx answer; the URL is redacted for a message only on failure."""
    if not content:
        raise CorruptResponseError(f"{answered(response)} with an empty body")
    try:
        body = decode_json(content)
    except UnicodeDecodeError:
        raise CorruptResponseError(
            f"{answered(response)} with a body that is not valid UTF-8"
        ) from None
    except (ValueError, RecursionError):
        if _looks_like_html(response, content):
            kind = "HTML"
        elif content.lstrip()[:1] in (b"{", b"["):
            kind = "truncated or malformed JSON"
        else:
            kind = f"not JSON ({snippet(response.headers.get('Content-Type', 'no type'), 40)})"
        raise CorruptResponseError(f"{answered(response)} with a body that is {kind}") from None
    if not isinstance(body, dict):
        raise CorruptResponseError(f"{answered(response)} with JSON that is not an object")
    return body
