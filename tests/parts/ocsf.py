"""OCSF events checked: against the subset schema of tests/data (``SCHEMA``, ``valid``) and
the official 1.3.0 one (``official``, ``schema_errors``); ``CASES``, a record of each kind
with the class and activity its event must have."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema  # type: ignore[import-untyped]
from support import audit_record

from etl.records.ocsf import OCSF_VERSION
from parts.exports import T0

SCHEMA = json.loads(
    (Path(__file__).parents[1] / "data" / "ocsf-1.3.0-subset.schema.json").read_text()
)
VALIDATOR = Draft202012Validator(SCHEMA)


def valid(event: dict[str, Any]) -> None:
    """``event`` validates against the subset schema, its ``type_uid`` made of its class
    and activity."""
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


def schema_errors(schema: Any, event: dict[str, Any]) -> list[str]:
    """What ``schema`` (``official()``) finds wrong with ``event``, for its class and profiles."""
    name = schema.lookup_class_name_from_uid(event["class_uid"])
    validator = Draft202012Validator(schema.get_class_schema(name, event["metadata"]["profiles"]))
    return sorted(error.message for error in validator.iter_errors(event))


@cache
def official() -> Any:
    """The official OCSF schema of the version events declare (the ``ocsf-json-schema``
    package's export), loaded once."""
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(OCSF_VERSION))
