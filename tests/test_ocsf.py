"""``--format ocsf``: every event validates against OCSF 1.3.0 (tests/data, a subset
schema of the two classes used), and the mapping of docs/OCSF.md holds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from support import audit_record, fresh_store
from test_export import export, store_records

from etl.records.ocsf import to_ocsf

SCHEMA = json.loads((Path(__file__).parent / "data" / "ocsf-1.3.0-subset.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def valid(event: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(event), key=str)
    assert not errors, [e.message for e in errors]
    assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]


CASES = {
    "update": (audit_record(1, T0), 6003, 3, "Update"),
    "create": (audit_record(2, T0, action="create"), 6003, 1, "Create"),
    "destroy": (audit_record(3, T0, action="destroy"), 6003, 4, "Delete"),
    "exported": (audit_record(4, T0, action="exported", source_type="account"), 6003, 2, "Read"),
    "other": (audit_record(5, T0, action="impersonate"), 6003, 99, "impersonate"),
    "login": (audit_record(6, T0, action="login", source_type="user"), 3002, 1, "Logon"),
    "system actor, no ip": (
        audit_record(7, T0, actor_id=-1, actor_name="Zendesk", ip_address=None),
        6003, 3, "Update",
    ),
    "bare": ({"id": 8, "created_at": "2026-03-01T12:00:00Z"}, 6003, 99, "Other"),
    "bare login": ({"id": 9, "action": "login", "created_at": "2026-03-01T12:00:00Z"},
                   3002, 1, "Logon"),
    "new field": (audit_record(10, T0, risk_score=3, tags=["x"]), 6003, 3, "Update"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_kind_of_record_makes_a_valid_event(case: str) -> None:
    record, class_uid, activity_id, activity_name = CASES[case]
    event = to_ocsf(record, "acme", json.dumps(record))
    valid(event)
    assert (event["class_uid"], event["activity_id"]) == (class_uid, activity_id)
    assert event["activity_name"] == activity_name
    assert event["metadata"]["uid"] == str(record["id"])
    assert event["time"] == int(T0.timestamp() * 1000)
    assert json.loads(event["raw_data"]) == record
    assert event["unmapped"]["account"] == "acme"


def test_the_fields_land_where_docs_ocsf_md_says() -> None:
    record = audit_record(1, T0, ip_address="198.51.100.7")
    event = to_ocsf(record, "acme")
    assert event["actor"] == {"user": {"uid": "1234", "name": "Test Admin"}}
    assert event["src_endpoint"] == {"ip": "198.51.100.7"}
    assert event["dst_endpoint"] == {"hostname": "acme.zendesk.com"}
    assert event["resources"] == [{"uid": "77", "type": "rule", "name": "Some trigger"}]
    assert event["api"] == {"operation": "update", "service": {"name": "Zendesk"}}
    assert event["message"] == "change 1"
    assert event["metadata"]["original_time"] == record["created_at"]
    assert event["unmapped"] == {
        "account": "acme",
        "action_label": "Updated",
        "url": record["url"],
    }
    assert "raw_data" not in event


def test_a_login_names_who_signed_in() -> None:
    event = to_ocsf(audit_record(1, T0, action="login", source_type="user"), "acme")
    assert event["user"] == {"uid": "1234", "name": "Test Admin"}
    assert event["service"] == {"name": "Zendesk"}
    assert event["unmapped"]["source_type"] == "user"


def test_the_schema_refuses_what_ocsf_refuses() -> None:
    """The schema is not vacuous: each of these breaks a rule of OCSF 1.3.0."""
    good = to_ocsf(audit_record(1, T0), "acme")
    broken = [
        {k: v for k, v in good.items() if k != "actor"},  # required in API Activity
        {**good, "api": {}},  # api.operation is required
        {**good, "class_uid": 3002},  # an authentication without its user
        {**good, "activity_id": 7, "type_uid": 600307},  # not an API Activity activity
        {**good, "metadata": {"version": "1.3.0"}},  # metadata.product is required
        {**good, "resources": [{"type": "rule"}]},  # a resource needs a uid or a name
        {**good, "actr": good["actor"]},  # no such attribute
    ]
    for event in broken:
        assert list(VALIDATOR.iter_errors(event)), event


def test_an_ocsf_export_validates_line_by_line(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    records = [case[0] for case in CASES.values()]
    store_records(store, records)
    lines = export(store, tmp_path / "ocsf.jsonl", fmt="ocsf")
    assert [line["metadata"]["uid"] for line in lines] == [str(r["id"]) for r in records]
    sequence = [line["metadata"]["sequence"] for line in lines]
    assert sequence == sorted(set(sequence))  # the store sequence: part of the stable id
    for line in lines:
        valid(line)
        assert json.loads(line["raw_data"])["id"] == int(line["metadata"]["uid"])
