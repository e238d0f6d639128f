"""Turn one audit-log record from the API into a row, or into a ``Reject``.

Only what makes a record unstorable rejects it: no integer ``id`` (the key), no
usable ``created_at`` (the watermark's clock), or a value JSON cannot carry (NaN,
Infinity: no database's JSON column takes it). Any other field of the wrong type
is stored as NULL; the record is always kept in ``raw``, so nothing Zendesk sends
is lost, including fields it adds later. The one alteration: a character no database
can store becomes U+FFFD in ``raw`` and the columns, on every database alike, so that
one odd record can never stop the log. Those are NUL (U+0000), which PostgreSQL takes
neither in text nor in JSONB, and a lone surrogate (JSON's ``"\\ud800"`` escape decodes
to one), which is not UTF-8 at all. A reject's ``raw`` is the record's exact JSON text
(ASCII-escaped, so both are harmless there).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TEXT_FIELDS = (
    "action",
    "action_label",
    "actor_name",
    "change_description",
    "ip_address",
    "source_label",
    "source_type",
    "url",
)
INTEGER_FIELDS = ("actor_id", "source_id")
# Not a column: ``raw`` as compact JSON text, exactly what the store would write for it,
# made while checking the record; the store uses it instead of serializing ``raw`` again.
RAW_JSON = "raw_json"
# Bounded by what a BIGINT column holds.
_BIGINT = 2**63
_DIGITS = re.compile(r"\A\s*-?[0-9]+\s*\Z")  # ASCII only: int() also takes "١٢", not "²"
# What json.dumps(raw, allow_nan=False, default=str, separators=(",", ":")) uses, made once.
_ENCODER = json.JSONEncoder(allow_nan=False, default=str, separators=(",", ":"))
# NUL, or a surrogate on its own (one of a pair is joined with the other by json.loads).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


@dataclass(frozen=True)
class Reject:
    record_id: str | None
    reason: str
    raw: str  # the record as JSON text, whatever it was


def parse_record(raw: object, account: str, synced_at: datetime) -> dict[str, Any] | Reject:
    if not isinstance(raw, dict):
        return Reject(None, f"record is a JSON {type(raw).__name__}, not an object", _dump(raw))
    try:
        # One C-speed pass answers both questions: NaN/Infinity raise, and a NUL or a
        # surrogate can only be where the ASCII text holds the escape \u0000 or \udxxx
        # (exactly checked only then: a pair, an emoji, is escaped as \udxxx too).
        text = _ENCODER.encode(raw)
    except ValueError:
        return Reject(
            _text_id(raw.get("id")), "holds NaN or Infinity, which JSON cannot store", _dump(raw)
        )
    record_id = _integer(raw.get("id"))
    if record_id is None:
        reason = "no id" if raw.get("id") is None else "id is not an integer"
        return Reject(_text_id(raw.get("id")), reason, _dump(raw))
    created_at = parse_created_at(raw.get("created_at"))
    if created_at is None:
        return Reject(str(record_id), "no usable created_at", _dump(raw))
    clean = not (("\\u0000" in text or "\\ud" in text) and _has_unstorable(raw))
    stored: dict[Any, Any] = raw if clean else _storable(raw)
    row: dict[str, Any] = {"account": account, "id": record_id, "created_at": created_at}
    for name in TEXT_FIELDS:
        value = stored.get(name)
        row[name] = value if isinstance(value, str) else None
    for name in INTEGER_FIELDS:
        row[name] = _integer(stored.get(name))
    row["raw"] = stored
    row["synced_at"] = synced_at
    if clean:
        row[RAW_JSON] = text
    return row


def parse_created_at(value: object) -> datetime | None:
    """Zendesk sends ``YYYY-MM-DDTHH:MM:SSZ``; accept any ISO 8601 time with an offset."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is UTC:  # what Zendesk's "Z" gives: nothing to convert
            return parsed
        if parsed.tzinfo is None:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across UTC
        return None


def _integer(value: object) -> int | None:
    if type(value) is int:  # the usual case, first
        return value if -_BIGINT <= value < _BIGINT else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)  # connectors re-emit ids as 6139157572367.0
    elif isinstance(value, str) and _DIGITS.match(value):
        result = int(value)
    else:
        return None
    return result if -_BIGINT <= result < _BIGINT else None


def _text_id(value: object) -> str | None:
    return None if value is None else _UNSTORABLE.sub(REPLACEMENT, str(value))[:64]


def _has_unstorable(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    return False


def _storable(value: Any) -> Any:
    """A copy of ``value`` with every unstorable character in its strings (keys too)
    replaced."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _dump(raw: object) -> str:
    return json.dumps(raw, sort_keys=True, default=str)
