"""An access-log record -> a row or a reject: the audit log's hostile-input rules."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from access_support import access_record

from etl.records.access import parse_access_record, url_path
from etl.records.audit import Reject

SYNCED = datetime(2026, 12, 1, tzinfo=UTC)
AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def parse(record: object) -> dict[str, Any] | Reject:
    return parse_access_record(record, "acme", SYNCED)


def row(record: object) -> dict[str, Any]:
    parsed = parse(record)
    assert not isinstance(parsed, Reject), parsed
    return parsed


def test_the_webhook_example_becomes_a_row_of_its_fields() -> None:
    record = access_record(
        "01J5M2QGXR3KZ8N4BVWYH6T9PA", AT, url="/api/v2/tickets/7.json?include=users"
    )
    parsed = row(record)
    assert parsed["id"] == "01J5M2QGXR3KZ8N4BVWYH6T9PA" and parsed["timestamp"] == AT
    assert parsed["user_id"] == "6596848315901" and parsed["status"] == 200
    assert parsed["path"] == "/api/v2/tickets/7.json"  # what filter[path] and the index match
    assert parsed["url"] == "/api/v2/tickets/7.json?include=users" and parsed["raw"] == record


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (["not", "an", "object"], "not an object"),
        (access_record("x", AT, id=None), "no id"),
        (access_record("", AT), "no id"),
        (access_record("x", AT, id=["01J"]), "id is not a string"),
        (access_record("x", AT, id=True), "id is not a string"),
        (access_record("x", AT, timestamp="yesterday"), "no usable timestamp"),
        (access_record("x", AT, timestamp=None), "no usable timestamp"),
        (access_record("x", AT, timestamp="2026-11-30T12:00:00"), "no usable timestamp"),
        (access_record("x", AT, bytes_sent=math.nan), "NaN or Infinity"),
        (access_record("x" * 65, AT), "id has 65 characters"),
        (access_record("x", AT, user_id="7" * 65), "user_id has 65 characters"),
        (access_record("x", AT, ip_address="1" * 65), "ip_address has 65 characters"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_what_cannot_be_stored_is_rejected_with_its_reason(record: object, reason: str) -> None:
    parsed = parse(record)
    assert isinstance(parsed, Reject)
    assert reason in parsed.reason
    assert parsed.raw  # the record kept, as text, whatever it was


def test_user_id_as_a_string_or_an_integer_is_text() -> None:
    assert row(access_record("a", AT, user_id="123"))["user_id"] == "123"
    assert row(access_record("b", AT, user_id=123))["user_id"] == "123"
    assert row(access_record("c", AT, user_id=None))["user_id"] is None
    assert row(access_record("d", AT, user_id=True))["user_id"] is None  # not a user


def test_an_integer_id_is_kept_as_its_text() -> None:
    assert row(access_record("x", AT, id=123456))["id"] == "123456"


def test_wrong_types_become_null_and_the_record_is_kept_whole_in_raw() -> None:
    record = access_record(
        "x", AT, status="OK", bytes_sent={"n": 1}, method=7, client=None, new_field=[1, "two"]
    )
    parsed = row(record)
    assert parsed["status"] is None and parsed["bytes_sent"] is None
    assert parsed["method"] is None and parsed["client"] is None
    assert parsed["raw"] == record and parsed["raw"]["new_field"] == [1, "two"]
    assert row(access_record("y", AT, status="404"))["status"] == 404  # digits: a number
    assert row(access_record("z", AT, status=2**40))["status"] is None  # not an HTTP status


def test_a_graphql_access_has_no_url_and_keeps_its_query() -> None:
    query = {"operation_name": "TicketQuery", "variables": {"id": "7"}}
    parsed = row(access_record("g", AT, url=None, graphql=query, authorization_type=None))
    assert parsed["url"] is None and parsed["path"] is None and parsed["graphql"] == query


def test_other_time_forms_and_unstorable_characters() -> None:
    fraction = row(access_record("t", AT, timestamp="2026-11-30T12:00:00.250+01:00"))
    assert fraction["timestamp"] == datetime(2026, 11, 30, 11, 0, 0, 250000, tzinfo=UTC)
    dirty = row(access_record("n", AT, summary="a\x00b", client="\ud800"))
    assert dirty["summary"] == "a\ufffdb" and dirty["client"] == "\ufffd"
    assert dirty["raw"]["summary"] == "a\ufffdb"


def test_url_path() -> None:
    assert url_path("/api/v2/tickets/7.json?page=1#x") == "/api/v2/tickets/7.json"
    assert url_path("https://acme.zendesk.com/agent/tickets/7?x=1") == "/agent/tickets/7"
    assert url_path("http://[::1/") is None  # an absolute URL that does not parse
    assert url_path("/" + "a" * 600) is None  # longer than its indexed column
    assert url_path(None) is None
