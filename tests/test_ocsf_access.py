"""The access log as OCSF API Activity (6003): every kind of record, hostile ones included,
validates against the subset schema (tests/data) and the official 1.3.0 schema, and the
mapping of docs/OCSF.md holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from access_support import access_record
from parts.ocsf import official, schema_errors, valid

from etl.records.ocsf_access import access_to_ocsf

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
QUERY = "query { ticket(id: 7) { subject } }"

CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "list": (access_record("01A", T0), 2, "Read"),
    "show absolute": (access_record("01B", T0, url="https://acme.zendesk.com/api/v2/tickets/7.json"),
                      2, "Read"),
    "create": (access_record("01C", T0, method="POST", status=201), 1, "Create"),
    "patch": (access_record("01D", T0, method="PATCH", url="/api/v2/users/12.json"), 3, "Update"),
    "delete failed": (access_record("01E", T0, method="DELETE", status=403), 4, "Delete"),
    "graphql": (access_record("01F", T0, method="POST", url=None, graphql=QUERY), 2, "Read"),
    "graphql object": (access_record("01G", T0, method="POST", url=None,
                                     graphql={"query": "mutation { x }"}), 99, "GraphQL mutation"),
    "bare": ({"id": "01H", "timestamp": "2026-03-01T12:00:00Z"}, 99, "Other"),
    "integer user": (access_record("01I", T0, user_id=6596848315901), 2, "Read"),
    "hostile types": (access_record("01J", T0, user_id=["x"], ip_address="not an ip", method=7,
                                    url={"a": 1}, status="200", client=5, summary=None,
                                    bytes_sent="many"), 99, "Other"),
    "odd method": (access_record("01K", T0, method="PROPFIND", status=99999), 99, "PROPFIND"),
    "bad host": (access_record("01L", T0, url="https://[::1/x?y=1"), 2, "Read"),
    "new field": (access_record("01M", T0, risk=3, tags=["x"]), 2, "Read"),
}  # fmt: skip


def _events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (case, access_to_ocsf(record, "acme", json.dumps(record), sequence=9))
        for case, (record, _, _) in sorted(CASES.items())
    ]


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_access_record_makes_a_valid_event(case: str) -> None:
    record, activity_id, activity_name = CASES[case]
    event = access_to_ocsf(record, "acme", json.dumps(record), sequence=9)
    valid(event)
    assert schema_errors(official(), event) == [], event
    assert (event["class_uid"], event["activity_id"]) == (6003, activity_id)
    assert event["activity_name"] == activity_name
    assert event["metadata"]["uid"] == record["id"]
    assert event["metadata"]["sequence"] == 9
    assert event["metadata"]["product"]["feature"] == {"name": "Access Log"}
    assert event["time"] == int(T0.timestamp() * 1000)
    assert json.loads(event["raw_data"]) == record
    assert event["unmapped"]["account"] == "acme"


def test_the_fields_land_where_docs_ocsf_md_says() -> None:
    record = access_record(
        "01A", T0, url="https://acme.zendesk.com/api/v2/tickets/7.json?include=users",
        referer="https://acme.zendesk.com/agent/tickets/7",
    )  # fmt: skip
    event = access_to_ocsf(record, "acme")
    assert event["actor"] == {"user": {"uid": "6596848315901"}}
    assert event["src_endpoint"] == {"ip": "192.168.1.100"}
    assert event["dst_endpoint"] == {"hostname": "acme.zendesk.com"}
    assert event["http_request"] == {
        "http_method": "GET",
        "url": {
            "url_string": record["url"],
            "path": "/api/v2/tickets/7.json",
            "query_string": "include=users",
            "hostname": "acme.zendesk.com",
        },
        "user_agent": "Zendesk/1.0",
        "referrer": "https://acme.zendesk.com/agent/tickets/7",
    }
    assert event["api"] == {
        "operation": "GET /api/v2/tickets/7.json",
        "service": {"name": "Zendesk"},
        "response": {"code": 200},
    }
    assert (event["status_id"], event["status"], event["status_code"]) == (1, "Success", "200")
    assert event["resources"] == [{"uid": "7", "type": "tickets"}]
    assert event["message"] == "Listed tickets"
    assert event["unmapped"] == {
        "account": "acme",
        "authorization_type": "bearer",
        "bytes_sent": 1234,
        "category": "ticket",
        "origin_service": "support",
        "graphql": None,
    }
    assert "raw_data" not in event


def test_a_graphql_access_has_no_url_and_keeps_its_query() -> None:
    record = access_record("01F", T0, method="POST", url=None, graphql=QUERY)
    event = access_to_ocsf(record, "acme")
    assert event["api"]["operation"] == "graphql"
    assert event["http_request"] == {"http_method": "POST", "user_agent": "Zendesk/1.0"}
    assert event["unmapped"]["graphql"] == QUERY
    assert event["unmapped"]["url"] is None
    assert "resources" not in event


def test_what_the_event_cannot_hold_stays_in_unmapped() -> None:
    record, _, _ = CASES["hostile types"]
    event = access_to_ocsf(record, "acme")
    assert event["actor"] == {"app_name": "Zendesk"}
    assert event["src_endpoint"] == {"name": "unknown"}
    assert (event["status_id"], event["status"]) == (0, "Unknown")
    assert "status_code" not in event and "response" not in event["api"]
    for name in ("user_id", "ip_address", "method", "url", "status", "bytes_sent", "client"):
        assert event["unmapped"][name] == record[name], name
    patch = access_to_ocsf(CASES["patch"][0], "acme")  # not in OCSF 1.3.0's method list
    assert "http_method" not in patch["http_request"]
    assert patch["unmapped"]["method"] == "PATCH"
    assert patch["api"]["operation"] == "PATCH /api/v2/users/12.json"


def test_the_official_schema_refuses_what_it_should() -> None:
    event = dict(_events()[0][1])
    assert schema_errors(official(), {**event, "http_request": {"http_method": "PATCH"}})
    assert schema_errors(official(), {**event, "src_endpoint": {"ip": "not an ip"}})
