"""Records: what is stored, what is kept only in raw, and what becomes a reject."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from etl.records.audit import Reject, parse_created_at, parse_record

SAMPLES = Path(__file__).resolve().parent / "data" / "samples"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sample_records() -> list[dict[str, Any]]:
    docs = json.loads((SAMPLES / "zendesk-docs-list-audit-logs.json").read_text())["audit_logs"]
    airbyte = json.loads(
        (SAMPLES / "airbyte-source-zendesk-support-expected-records-audit_logs.json").read_text()
    )
    return [*docs, *(entry["data"] for entry in airbyte)]


def test_real_samples_become_rows_with_every_field() -> None:
    for raw in sample_records():
        row = parse_record(raw, "acme", NOW)
        assert isinstance(row, dict), row
        assert row["id"] == int(raw["id"])
        assert isinstance(row["id"], int)
        assert row["created_at"] == datetime.strptime(
            raw["created_at"], "%Y-%m-%dT%H:%M:%SZ"
        ).replace(tzinfo=UTC)
        assert row["raw"] is raw
        assert row["ip_address"] == raw["ip_address"]
        assert row["actor_id"] == int(raw["actor_id"])
        assert row["change_description"] == raw["change_description"]


def record(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 6139157572367,
        "action": "update",
        "action_label": "Updated",
        "actor_id": 1234,
        "actor_name": "Sameer Patel",
        "change_description": "Role changed",
        "created_at": "2023-01-01T05:01:05Z",
        "ip_address": "209.119.38.228",
        "source_id": 3456,
        "source_label": "John Doe",
        "source_type": "user",
        "url": "https://acme.zendesk.com/api/v2/audit_logs/6139157572367.json",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (record(id=...), "no id"),
        (record(id=None), "no id"),
        (record(id="abc"), "id is not an integer"),
        (record(id=1.5), "id is not an integer"),
        (record(id=True), "id is not an integer"),
        (record(id=2**70), "id is not an integer"),
        (record(created_at=...), "no usable created_at"),
        (record(created_at="yesterday"), "no usable created_at"),
        (record(created_at="2023-01-01T05:01:05"), "no usable created_at"),
        (record(created_at=1672549265), "no usable created_at"),
        ("not an object", "record is a JSON str, not an object"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_unstorable_records_are_rejected_with_reason_and_raw(raw: Any, reason: str) -> None:
    result = parse_record(raw, "acme", NOW)
    assert isinstance(result, Reject)
    assert result.reason == reason
    assert json.loads(result.raw) == raw


def test_wrongly_typed_or_missing_fields_are_null_but_kept_in_raw() -> None:
    raw = record(actor_id="12x", actor_name=..., source_label=None, ip_address=42, extra={"a": 1})
    row = parse_record(raw, "acme", NOW)
    assert isinstance(row, dict)
    assert row["actor_id"] is None
    assert row["actor_name"] is None
    assert row["source_label"] is None
    assert row["ip_address"] is None
    assert row["raw"]["actor_id"] == "12x"
    assert row["raw"]["extra"] == {"a": 1}


def test_integral_float_and_digit_string_ids_are_accepted() -> None:
    for value in (6139157572367.0, "6139157572367"):
        row = parse_record(record(id=value), "acme", NOW)
        assert isinstance(row, dict)
        assert row["id"] == 6139157572367


def test_a_float_id_past_2_to_the_53_is_not_taken_for_another_record() -> None:
    """``9007199254740993.0`` decodes as 2**53: read as an integer it was stored over the
    record 9007199254740992, one of the two lost while the run said success."""
    for text in ("9007199254740993.0", "-9007199254740992.0", "1e300"):
        reject = parse_record(record(id=json.loads(text)), "acme", NOW)
        assert isinstance(reject, Reject) and reject.reason == "id is not an integer"
    row = parse_record(record(id=json.loads("9007199254740991.0")), "acme", NOW)  # exact
    assert isinstance(row, dict) and row["id"] == 2**53 - 1


def test_created_at_with_offset_is_normalised_to_utc() -> None:
    assert parse_created_at("2023-01-01T07:01:05+02:00") == datetime(
        2023, 1, 1, 5, 1, 5, tzinfo=UTC
    )


def test_characters_no_database_stores_become_replacement_characters() -> None:
    """NUL and lone surrogates (decoded from JSON escapes) become U+FFFD, keys included;
    a surrogate pair (an emoji) is a real character and stays. Clean records keep the JSON
    text made while checking them; altered ones have it made again by the store."""
    raw = json.loads(
        '{"id": 1, "created_at": "2023-01-01T05:01:05Z", "actor_name": "a\\ud800b\\u0000",'
        ' "k\\udc00": ["\\udfff"], "emoji": "\\ud83d\\ude00"}'
    )
    row = parse_record(raw, "acme", NOW)
    assert isinstance(row, dict)
    assert row["actor_name"] == "a\ufffdb\ufffd"
    assert row["raw"]["k\ufffd"] == ["\ufffd"] and row["raw"]["emoji"] == "\U0001f600"
    assert "raw_json" not in row
    json.dumps(row["raw"], ensure_ascii=False).encode("utf-8")  # storable as UTF-8 now

    emoji_only = parse_record(record(actor_name="\U0001f600"), "acme", NOW)
    assert isinstance(emoji_only, dict)
    assert emoji_only["actor_name"] == "\U0001f600"
    assert json.loads(emoji_only["raw_json"]) == record(actor_name="\U0001f600")


NON_TEXT_KEY: dict[Any, Any] = {**record(), 7: "a key that is not text"}


@pytest.mark.parametrize(
    "raw",
    [
        record(actor_name="Zoë 😀", change_description='Quote " and \\ and \t'),  # orjson
        record(score=1.5, tags=["a", {"b": None}]),  # floats and nesting: the json module
        record(actor_id=2**70, source_label="Zoë"),  # an integer orjson refuses
        NON_TEXT_KEY,  # a key orjson refuses
    ],
    ids=["plain", "float-and-nesting", "beyond-64-bits", "non-text-key"],
)
def test_raw_text_is_compact_utf8_json_of_the_record_whatever_encodes_it(raw: Any) -> None:
    """Both encoders give the same text for what they take: compact, non-ASCII as UTF-8,
    keys sorted where they sort (the store writes this text as it is, the canonical text of
    a record of plain values), and exactly the record again when read."""
    row = parse_record(raw, "acme", NOW)
    assert isinstance(row, dict)
    sortable = all(isinstance(key, str) for key in raw)
    expected = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, sort_keys=sortable)
    assert row["raw_json"] == expected
    assert json.loads(row["raw_json"]) == json.loads(json.dumps(raw))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [float("-inf")]])
def test_nan_and_infinity_are_rejected_not_written_as_null(value: Any) -> None:
    result = parse_record(record(score=value), "acme", NOW)
    assert isinstance(result, Reject)
    assert result.reason == "holds NaN or Infinity, which JSON cannot store"
