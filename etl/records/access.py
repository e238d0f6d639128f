"""Turn one access-log record (``GET /api/v2/access_logs``) into a row, or into a ``Reject``.

The audit log's rules (``etl.records.audit``), for the access log's fields. Only what
makes a record unstorable rejects it: no string ``id`` (the key; an integer one is kept
as its text), no usable ``timestamp`` (the watermark's clock), NaN or Infinity, or a
text longer than its bounded, indexed column (``id``, ``user_id``, ``ip_address``:
``etl.common.fields``). ``user_id`` is a string in Zendesk's example and an integer
elsewhere in its API: both are stored as text. Any other field of the wrong type is
stored as NULL; the record is always kept whole in ``raw``, fields Zendesk adds later
included. ``path`` is not an API field: the URL without its query or fragment (what
``filter[path]`` matches), NULL when there is no URL (a GraphQL access) or when it is
longer than its indexed column (``url`` keeps it whole). Characters no database can
store become U+FFFD, as in the audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from etl.common.fields import ACCESS_PATH_LENGTH, ACCESS_TEXT_LENGTHS
from etl.records.audit import (
    RAW_JSON,
    Reject,
    _dump,
    _encode,
    _has_unstorable,
    _integer,
    _storable,
    _text_id,
    parse_created_at,
)

TEXT_FIELDS = (
    "ip_address",
    "method",
    "url",
    "authorization_type",
    "client",
    "referer",
    "category",
    "summary",
    "origin_service",
)
_INT32 = 2**31


def parse_access_record(raw: object, account: str, synced_at: datetime) -> dict[str, Any] | Reject:
    if not isinstance(raw, dict):
        return Reject(None, f"record is a JSON {type(raw).__name__}, not an object", _dump(raw))
    try:
        text, maybe_unstorable = _encode(raw)
    except ValueError:
        return Reject(
            _text_id(raw.get("id")), "holds NaN or Infinity, which JSON cannot store", _dump(raw)
        )
    clean = not (maybe_unstorable and _has_unstorable(raw))
    stored: dict[Any, Any] = raw if clean else _storable(raw)
    record_id = identifier(stored.get("id"))
    if record_id is None:
        value = raw.get("id")
        reason = "no id" if value is None or value == "" else "id is not a string"
        return Reject(_text_id(value), reason, _dump(raw))
    timestamp = parse_created_at(raw.get("timestamp"))
    if timestamp is None:
        return Reject(record_id[:64], "no usable timestamp", _dump(raw))
    row: dict[str, Any] = {"account": account, "id": record_id, "timestamp": timestamp}
    row["user_id"] = identifier(stored.get("user_id"))
    for name in TEXT_FIELDS:
        value = stored.get(name)
        row[name] = value if isinstance(value, str) else None
    row["path"] = url_path(row["url"])
    row["status"] = status_value(stored.get("status"))
    row["bytes_sent"] = _integer(stored.get("bytes_sent"))
    graphql = stored.get("graphql")
    row["graphql"] = graphql  # any JSON value; None is NULL
    for name, limit in ACCESS_TEXT_LENGTHS.items():
        value = row[name]
        if value is not None and len(value) > limit:
            why = f"{name} has {len(value)} characters, the column holds {limit}"
            return Reject(record_id[:64], why, _dump(raw))
    row["raw"] = stored
    row["synced_at"] = synced_at
    if clean:
        row[RAW_JSON] = text
    return row


def status_value(value: object) -> int | None:
    """An HTTP status as stored: an integer (``_integer``'s) within the INTEGER column."""
    status = _integer(value)
    return status if status is not None and -_INT32 <= status < _INT32 else None


def identifier(value: object) -> str | None:
    """A non-empty string as it is, an integer as its text; anything else None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def url_path(url: str | None) -> str | None:
    """``url`` without query or fragment (scheme and host too, if absolute); None when it
    does not fit the indexed column."""
    if url is None:
        return None
    try:
        path = urlsplit(url).path if "://" in url else url.split("?", 1)[0].split("#", 1)[0]
    except ValueError:  # an absolute URL that does not parse (a bad IPv6 host)
        return None
    return path if len(path) <= ACCESS_PATH_LENGTH else None
