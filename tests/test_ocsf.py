"""``--format ocsf``: every event validates against OCSF 1.3.0 (tests/data, a subset
schema of the two classes used), and the mapping of docs/OCSF.md holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from parts.exports import T0, export, store_records
from parts.ocsf import CASES, VALIDATOR, valid
from support import audit_record, fresh_store

from etl.records.ocsf import to_ocsf


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
