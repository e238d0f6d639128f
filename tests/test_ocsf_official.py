"""OCSF events against the official 1.3.0 schema, and sign-ins' outcomes.

The official schema: the OCSF server's export of 1.3.0 as the ``ocsf-json-schema`` package
ships it (from PyPI; it builds a JSON Schema per class and declared profiles, every
attribute outside them refused). Where a checkout of github.com/ocsf/ocsf-schema at tag
1.3.0 is at hand, ``OCSF_SCHEMA_REPO=/path`` also compiles it with the ``ocsf-lib``
compiler at test time and checks that every attribute an event carries is one of its class
under the profiles it declares (the ocsf-lib compiler puts Authentication's ``actor`` in
the ``host`` profile). The repository is never part of this project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema  # type: ignore[import-untyped]
from support import audit_record
from test_ocsf import CASES

from etl.records.ocsf import OCSF_VERSION, to_ocsf
from zendesk_sim import generate_records

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
SIGN_INS = {
    "successful": ("Successful sign-in using Zendesk password", 1, "Success"),
    "failed": ("Failed sign-in using Zendesk password: wrong password", 2, "Failure"),
    "locked out": ("Sign-in attempt blocked: too many attempts", 2, "Failure"),
    "no sentence": (None, 0, "Unknown"),
}


def _errors(schema: Any, event: dict[str, Any]) -> list[str]:
    name = schema.lookup_class_name_from_uid(event["class_uid"])
    validator = Draft202012Validator(schema.get_class_schema(name, event["metadata"]["profiles"]))
    return sorted(error.message for error in validator.iter_errors(event))


@cache
def official() -> Any:
    return OcsfJsonSchemaEmbedded(get_ocsf_schema(OCSF_VERSION))


def _events() -> list[dict[str, Any]]:
    records = [case[0] for case in CASES.values()]
    for sentence, _, _ in SIGN_INS.values():
        login = audit_record(50, T0, action="login", source_type="user")
        if sentence is None:
            login.pop("change_description", None)
        else:
            login["change_description"] = sentence
        records.append(login)
    return [to_ocsf(record, "acme", json.dumps(record), sequence=7) for record in records]


def test_every_kind_of_event_validates_against_the_official_schema() -> None:
    for event in _events():
        assert event["metadata"]["version"] == OCSF_VERSION == "1.3.0"
        assert _errors(official(), event) == [], event


def test_the_official_schema_is_not_vacuous() -> None:
    event = _events()[0]
    assert _errors(official(), {**event, "actr": event["actor"]})  # no such attribute
    assert _errors(official(), {k: v for k, v in event.items() if k != "time"})  # required


@pytest.mark.parametrize("kind", sorted(SIGN_INS))
def test_a_sign_ins_outcome_comes_from_its_sentence(kind: str) -> None:
    sentence, status_id, status = SIGN_INS[kind]
    record = audit_record(1, T0, action="login", source_type="user", change_description=sentence)
    event = to_ocsf(record, "acme")
    assert (event["status_id"], event["status"]) == (status_id, status)
    if status_id == 2:
        assert event["status_detail"] == sentence
    else:
        assert "status_detail" not in event
    assert event["metadata"]["profiles"] == ["cloud", "host"]  # it carries actor


def test_the_simulator_signs_in_and_fails_to() -> None:
    end = datetime(2026, 3, 1, tzinfo=UTC)
    logins = [r for r in generate_records(3000, start=end - timedelta(days=1), end=end, seed=5)
              if r["action"] == "login"]  # fmt: skip
    outcomes = {to_ocsf(r, "acme")["status"] for r in logins}
    assert outcomes == {"Success", "Failure"}


def _compiled_from_repository() -> Any:
    repo = os.environ.get("OCSF_SCHEMA_REPO")
    if not repo:
        pytest.skip(
            "OCSF_SCHEMA_REPO is not set: give it a checkout of github.com/ocsf/ocsf-schema "
            "at tag 1.3.0 to compile it with ocsf-lib (not shipped with this project)"
        )
    compiled = subprocess.run(
        [sys.executable, "-m", "ocsf.compile", repo], capture_output=True, text=True, timeout=600
    )
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    schema = _as_server_export(json.loads(compiled.stdout))
    assert schema["version"] == OCSF_VERSION, f"{Path(repo)} is not at tag {OCSF_VERSION}"
    return OcsfJsonSchemaEmbedded(schema)


def _as_server_export(schema: Any) -> Any:
    """ocsf-lib's output in the server export's shape: no null-valued keys, and an object
    attribute as ``object_t`` with its ``object_type``."""
    schema = _without_nulls(schema)
    types, objects = schema["types"], schema["objects"]
    for group in ("classes", "objects"):
        for item in schema[group].values():
            for attribute in item.get("attributes", {}).values():
                if attribute.get("type") not in types and attribute.get("type") in objects:
                    attribute["object_type"], attribute["type"] = attribute["type"], "object_t"
    return schema


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_every_attribute_is_in_the_declared_profiles_as_ocsf_lib_compiles_them() -> None:
    """Only the attributes and profiles: ocsf-lib 0.10.4 keeps ``endpoint``'s constraint
    (name or uid) for ``network_endpoint``, where the server's export has its own (ip,
    hostname, ...), so its constraints are not what this checks."""
    compiled = _compiled_from_repository()

    def stray(event: dict[str, Any]) -> list[str]:
        return [e for e in _errors(compiled, event) if "Additional properties" in e]

    for event in _events():
        assert stray(event) == [], event
    login = next(e for e in _events() if e["class_uid"] == 3002)
    undeclared = {**login, "metadata": {**login["metadata"], "profiles": ["cloud"]}}
    assert stray(undeclared)  # actor without the host profile: refused
