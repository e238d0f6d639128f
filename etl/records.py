"""Turn one audit-log record from the API into a row, or into a ``Reject``.

Only what makes a record unstorable rejects it: no integer ``id`` (the key) or no
usable ``created_at`` (the watermark's clock). Any other field of the wrong type
is stored as NULL; the untouched record is always kept in ``raw``, so nothing
Zendesk sends is lost, including fields it adds later.
"""

from __future__ import annotations

import json
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
# Bounded by what a BIGINT column holds.
_BIGINT = 2**63


@dataclass(frozen=True)
class Reject:
    record_id: str | None
    reason: str
    raw: str  # the record as JSON text, whatever it was


def parse_record(raw: object, account: str, synced_at: datetime) -> dict[str, Any] | Reject:
    if not isinstance(raw, dict):
        return Reject(None, f"record is a JSON {type(raw).__name__}, not an object", _dump(raw))
    record_id = _integer(raw.get("id"))
    if record_id is None:
        reason = "no id" if raw.get("id") is None else "id is not an integer"
        return Reject(_text_id(raw.get("id")), reason, _dump(raw))
    created_at = parse_created_at(raw.get("created_at"))
    if created_at is None:
        return Reject(str(record_id), "no usable created_at", _dump(raw))
    row: dict[str, Any] = {"account": account, "id": record_id, "created_at": created_at}
    for name in TEXT_FIELDS:
        value = raw.get(name)
        row[name] = value if isinstance(value, str) else None
    for name in INTEGER_FIELDS:
        row[name] = _integer(raw.get(name))
    row["raw"] = raw
    row["synced_at"] = synced_at
    return row


def parse_created_at(value: object) -> datetime | None:
    """Zendesk sends ``YYYY-MM-DDTHH:MM:SSZ``; accept any ISO 8601 time with an offset."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def _integer(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)  # connectors re-emit ids as 6139157572367.0
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        result = int(value)
    else:
        return None
    return result if -_BIGINT <= result < _BIGINT else None


def _text_id(value: object) -> str | None:
    return None if value is None else str(value)[:64]


def _dump(raw: object) -> str:
    return json.dumps(raw, sort_keys=True, default=str)
