"""A maintainer's check: the job's OCSF events against a checkout of the schema's sources.

``tests/test_ocsf_official.py`` checks every kind of event against the OCSF server's export
of 1.3.0 (the ``ocsf-json-schema`` package, offline). This compiles a checkout of
github.com/ocsf/ocsf-schema at tag 1.3.0 with the ``ocsf-lib`` compiler instead, a second
opinion, and checks that every attribute an event carries is one of its class under the
profiles it declares. The checkout is never part of this project, so this is not in
``make test``; the tests run :func:`stray_attributes` and :func:`as_server_export` offline.

    .venv/bin/python scripts/ocsf_checkout.py /path/to/ocsf-schema

Exit 0 when every event passes, 1 when one carries an attribute outside its class, 2 when
the checkout does not compile or is not at the job's OCSF version.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded  # type: ignore[import-untyped]

from etl.records.ocsf import OCSF_VERSION, to_ocsf
from zendesk_sim import generate_records


def events() -> list[dict[str, Any]]:
    """One event for every record of a simulated day: every action and source type the
    simulator makes, sign-ins that succeed and fail among them."""
    end = datetime(2026, 3, 1, tzinfo=UTC)
    records = generate_records(3000, start=end - timedelta(days=1), end=end, seed=5)
    return [to_ocsf(r, "acme", json.dumps(r), sequence=i) for i, r in enumerate(records)]


def stray_attributes(schema: Any, batch: Iterable[dict[str, Any]]) -> list[str]:
    """Each event's attributes that its class, under its declared profiles, does not have.

    Only those: ocsf-lib 0.10.4 keeps ``endpoint``'s constraint (name or uid) for
    ``network_endpoint``, where the server's export has its own, so constraints are not
    what this checks."""
    found = []
    for event in batch:
        name = schema.lookup_class_name_from_uid(event["class_uid"])
        class_schema = schema.get_class_schema(name, event["metadata"]["profiles"])
        for error in Draft202012Validator(class_schema).iter_errors(event):
            if "Additional properties" in error.message:
                found.append(f"{name} {event['metadata'].get('uid')}: {error.message}")
    return found


def as_server_export(schema: Any) -> Any:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", help="a checkout of github.com/ocsf/ocsf-schema at tag 1.3.0")
    args = parser.parse_args(argv)
    compiled = subprocess.run(
        [sys.executable, "-m", "ocsf.compile", args.checkout],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if compiled.returncode != 0:
        print(f"ocsf_checkout: the compiler failed: {compiled.stderr.strip()[-500:]}")
        return 2
    schema = as_server_export(json.loads(compiled.stdout))
    if schema.get("version") != OCSF_VERSION:
        print(f"ocsf_checkout: the checkout is at {schema.get('version')}, not {OCSF_VERSION}")
        return 2
    batch = events()
    stray = stray_attributes(OcsfJsonSchemaEmbedded(schema), batch)
    for line in stray:
        print(line)
    print(f"{len(batch)} events, {len(stray)} attributes outside their class's profiles")
    return 1 if stray else 0


if __name__ == "__main__":
    sys.exit(main())
