"""A Zendesk audit record as an OCSF event (Open Cybersecurity Schema Framework 1.3.0).

Two classes, picked by the record's ``action``:

- ``login``: Authentication (3002), activity Logon: the actor signed in, or tried to. The
  sign-in sentence (``change_description``) says which: ``Successful sign-in ...`` is a
  success, any other sentence a failure with the sentence as ``status_detail`` (no
  sentence: status Unknown). These events declare the ``host`` profile, since they carry
  ``actor`` (the profile's attribute, as the ocsf-lib compiler reads the schema).
- anything else: API Activity (6003), with the action as the activity: ``create`` 1,
  ``exported`` 2 (Read: data left Zendesk), ``update`` 3, ``destroy``/``delete`` 4,
  any other 99 (Other) with the action as ``activity_name``.

docs/OCSF.md gives the mapping field by field; tests/data holds the JSON Schema of the
attributes used, which every event the tests make is validated against. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from etl.records.audit import parse_created_at

OCSF_VERSION = "1.3.0"
PRODUCT = {"name": "Zendesk", "vendor_name": "Zendesk", "feature": {"name": "Audit Log"}}
SYSTEM_ACTOR_ID = -1  # Zendesk's own actions

API_ACTIVITY = 6003
AUTHENTICATION = 3002
_CLASSES = {
    API_ACTIVITY: ("API Activity", 6, "Application Activity"),
    AUTHENTICATION: ("Authentication", 3, "Identity & Access Management"),
}
# action -> (activity_id, activity_name) in API Activity
_API_ACTIVITIES = {
    "create": (1, "Create"),
    "exported": (2, "Read"),
    "update": (3, "Update"),
    "destroy": (4, "Delete"),
    "delete": (4, "Delete"),
}
OTHER = 99
# The record's fields that have a place in the event; every other one goes to unmapped.
MAPPED = frozenset(
    {"id", "action", "actor_id", "actor_name", "change_description", "created_at",
     "ip_address", "source_id", "source_label", "source_type"}
)  # fmt: skip


def to_ocsf(
    record: Mapping[str, Any],
    account: str,
    raw_text: str | None = None,
    *,
    sequence: int | None = None,
) -> dict[str, Any]:
    """The OCSF event for ``record`` (as Zendesk sent it) of ``account``; ``raw_text``, the
    record's JSON, becomes ``raw_data`` and ``sequence`` (the row's store sequence number)
    ``metadata.sequence`` when given."""
    action = _text(record.get("action")) or ""
    class_uid = AUTHENTICATION if action == "login" else API_ACTIVITY
    if class_uid == AUTHENTICATION:
        activity_id, activity_name = 1, "Logon"
    else:
        activity_id, activity_name = _API_ACTIVITIES.get(action, (OTHER, action or "Other"))
    class_name, category_uid, category_name = _CLASSES[class_uid]
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{class_name}: {activity_name}",
        "severity_id": 1,
        "severity": "Informational",
        "status_id": 1,  # the audit log records what was done
        "status": "Success",
        "time": _epoch_ms(record.get("created_at")),
        "metadata": _metadata(record, sequence, class_uid),
        "cloud": {"provider": "Zendesk", "account": {"name": account}},
        "actor": _actor(record),
        "src_endpoint": _source(record),
    }
    message = _text(record.get("change_description"))
    if message:
        event["message"] = message
    if class_uid == AUTHENTICATION:
        event.update(_sign_in_status(message))
    host = _host(record.get("url"))
    if host:
        event["dst_endpoint"] = {"hostname": host}
    unmapped: dict[str, Any] = {"account": account}
    if class_uid == AUTHENTICATION:
        event["user"] = event["actor"].get("user") or {"name": "unknown"}
        event["service"] = {"name": "Zendesk"}
        unmapped.update(
            (k, record[k]) for k in ("source_id", "source_type", "source_label") if k in record
        )
    else:
        event["api"] = {"operation": action or "unknown", "service": {"name": "Zendesk"}}
        resource = _resource(record)
        if resource:
            event["resources"] = [resource]
    unmapped.update((k, v) for k, v in record.items() if k not in MAPPED)
    event["unmapped"] = unmapped
    if raw_text is not None:
        event["raw_data"] = raw_text
    return event


SUCCESSFUL_SIGN_IN = "Successful sign-in"


def _sign_in_status(sentence: str | None) -> dict[str, Any]:
    """A sign-in's outcome, from Zendesk's sentence: SIEM rules key failed logins on it."""
    if not sentence or not sentence.strip():
        return {"status_id": 0, "status": "Unknown"}
    if sentence.startswith(SUCCESSFUL_SIGN_IN):
        return {"status_id": 1, "status": "Success"}
    return {"status_id": 2, "status": "Failure", "status_detail": sentence}


def _metadata(record: Mapping[str, Any], sequence: int | None, class_uid: int) -> dict[str, Any]:
    # actor belongs to the host profile in Authentication (as ocsf-lib compiles 1.3.0): an
    # event that carries it declares the profile, every Authentication event here does
    profiles = ["cloud", "host"] if class_uid == AUTHENTICATION else ["cloud"]
    created = _text(record.get("created_at"))
    return event_metadata(PRODUCT, profiles, record.get("id"), created, sequence)


def event_metadata(
    product: dict[str, Any],
    profiles: list[str],
    uid: object,
    original_time: str | None,
    sequence: int | None,
) -> dict[str, Any]:
    """An event's ``metadata`` object, for either log's mapping (etl.records.ocsf_access)."""
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": product,
        "profiles": profiles,
        "uid": str(uid),
    }
    if original_time:
        metadata["original_time"] = original_time
    if sequence is not None:
        metadata["sequence"] = sequence
    return metadata


def _actor(record: Mapping[str, Any]) -> dict[str, Any]:
    user: dict[str, Any] = {}
    actor_id = record.get("actor_id")
    if isinstance(actor_id, int) and not isinstance(actor_id, bool):
        user["uid"] = str(actor_id)
        if actor_id == SYSTEM_ACTOR_ID:
            user["type_id"], user["type"] = 3, "System"
    name = _text(record.get("actor_name"))
    if name:
        user["name"] = name
    return {"user": user} if user else {"app_name": "Zendesk"}


def _source(record: Mapping[str, Any]) -> dict[str, Any]:
    ip = _text(record.get("ip_address"))
    # The class requires a source; Zendesk gives no address for some (system) actions.
    return {"ip": ip} if ip else {"name": "unknown"}


def _resource(record: Mapping[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {}
    source_id = record.get("source_id")
    if source_id is not None and not isinstance(source_id, bool | dict | list):
        resource["uid"] = str(source_id)
    for key, field in (("type", "source_type"), ("name", "source_label")):
        value = _text(record.get(field))
        if value:
            resource[key] = value
    if "uid" not in resource and "name" not in resource and resource:
        resource["name"] = resource["type"]  # a resource needs a uid or a name
    return resource


def _epoch_ms(value: Any) -> int:
    """``created_at`` in ms since the epoch (records.py stores no record without one)."""
    moment = parse_created_at(value)
    return 0 if moment is None else int(moment.timestamp() * 1000)


def _host(value: Any) -> str | None:
    text = _text(value)
    return urlsplit(text).hostname if text else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
