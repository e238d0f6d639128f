"""What of a URL or a response body may appear in a message or a log line.

``redact_url`` keeps the scheme, host, port and path, never the user info or the
fragment, and keeps query parameter *names* but only the values of parameters
known to be harmless (filters, sort, page size); every other value (cursors,
anything token-like) becomes ``***``. ``snippet`` squeezes a body into one short
line. Neither ever raises: they are called while building error messages.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# Parameters whose values help a reader and can never be a credential.
_SAFE_PARAMS = frozenset({"sort", "sort_by", "sort_order", "page[size]", "per_page", "page"})
_SAFE_PREFIXES = ("filter[",)
_MASK = "***"

# Things that look like credentials, in case a body echoes one back.
_SECRETISH = re.compile(
    r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\b(access_token|refresh_token|client_secret|password|token)\"?\s*[:=]\s*\"?[^\s\",&]+\"?"
)


def _is_safe(name: str) -> bool:
    return name in _SAFE_PARAMS or name.startswith(_SAFE_PREFIXES)


def redact_url(url: str) -> str:
    """``url`` without user info or fragment, its query values masked unless harmless."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port is not None else host
    except ValueError:
        return "<unparsable URL>"
    base = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    if not parts.query:
        return base
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{name}={value if _is_safe(name) else _MASK}" for name, value in pairs)
    return f"{base}?{query}"


def snippet(text: str | bytes | None, limit: int = 120) -> str:
    """``text`` on one line, whitespace squeezed, credentials masked, at most ``limit`` chars."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    one_line = " ".join(text.split())
    one_line = _SECRETISH.sub(_mask_match, one_line)
    if len(one_line) <= limit:
        return one_line
    return one_line[: max(limit - 1, 0)].rstrip() + "…"


def _mask_match(match: re.Match[str]) -> str:
    scheme, name = match.group(1), match.group(2)
    if scheme:
        return f"{scheme} {_MASK}"
    return f"{name}={_MASK}"


def error_summary(body: dict[str, Any]) -> str:
    """``error: description`` from a Zendesk or OAuth error body, as one short line."""
    parts: list[str] = []
    error = body.get("error")
    if isinstance(error, dict):
        parts += [str(error[key]) for key in ("title", "message") if error.get(key)]
    elif isinstance(error, str) and error:
        parts.append(error)
    for key in ("description", "error_description", "details", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
            break
    return snippet(": ".join(parts))


class RedactedUrl:
    """A URL as shown in logs and errors (``redact_url``), worked out only when shown."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._shown: str | None = None

    def __str__(self) -> str:
        if self._shown is None:
            self._shown = redact_url(self._url)
        return self._shown
