"""OCSF events against the official 1.3.0 schema, and sign-ins' outcomes.

The official schema: the OCSF server's export of 1.3.0 as the ``ocsf-json-schema`` package
ships it (from PyPI; it builds a JSON Schema per class and declared profiles, every
attribute outside them refused). A checkout of github.com/ocsf/ocsf-schema is never part of
this project: ``scripts/ocsf_checkout.py`` compiles one with the ``ocsf-lib`` compiler for a
maintainer; its check and its reading of the compiler's output are tested here.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from parts.exports import T0
from parts.ocsf import CASES, official, schema_errors
from support import audit_record

from etl.records.ocsf import OCSF_VERSION, to_ocsf
from zendesk_sim import generate_records

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from ocsf_checkout import as_server_export, events, stray_attributes

SIGN_INS = {
    "successful": ("Successful sign-in using Zendesk password", 1, "Success"),
    "failed": ("Failed sign-in using Zendesk password: wrong password", 2, "Failure"),
    "locked out": ("Sign-in attempt blocked: too many attempts", 2, "Failure"),
    "no sentence": (None, 0, "Unknown"),
}


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
        assert schema_errors(official(), event) == [], event


def test_the_official_schema_is_not_vacuous() -> None:
    event = _events()[0]
    assert schema_errors(official(), {**event, "actr": event["actor"]})  # no such attribute
    assert schema_errors(official(), {k: v for k, v in event.items() if k != "time"})  # required


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


def test_the_checkout_checks_attributes_against_the_declared_profiles() -> None:
    """scripts/ocsf_checkout.py's check (a maintainer runs it on a checkout of the sources),
    here on the server's export: every simulated event passes, and ``cloud`` without the
    ``cloud`` profile declared is an attribute outside its class (the compiler's output
    also puts Authentication's ``actor`` in ``host``; the server's export does not)."""
    batch = events()
    assert {e["class_uid"] for e in batch} == {3002, 6003}
    assert stray_attributes(official(), batch) == []
    login = next(e for e in batch if e["class_uid"] == 3002)
    undeclared = {**login, "metadata": {**login["metadata"], "profiles": ["host"]}}
    assert any(
        "'cloud' was unexpected" in line for line in stray_attributes(official(), [undeclared])
    )


def test_the_compilers_output_is_read_in_the_server_exports_shape() -> None:
    compiled = {
        "version": "1.3.0",
        "types": {"string_t": {"type": None}},
        "objects": {"user": {"attributes": {"name": {"type": "string_t", "profile": None}}}},
        "classes": {"authentication": {"attributes": {"user": {"type": "user"}, "x": None}}},
    }
    shaped = as_server_export(compiled)
    assert shaped["classes"]["authentication"]["attributes"] == {
        "user": {"type": "object_t", "object_type": "user"}
    }
    assert shaped["objects"]["user"]["attributes"]["name"] == {"type": "string_t"}
    assert shaped["types"] == {"string_t": {}}
