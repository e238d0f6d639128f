"""What generated audit-log record ``i`` says: its event, actor, person and numbers.

``generate.RecordSource`` decides when record ``i`` happened and its id; ``Content``
draws the rest from a hash of ``(seed, i)`` over the tables below (kinds of change seen
in real exports, names that need escaping) and writes the record as a dict or, on the
simulator's hot path, straight as the JSON text ``json.dumps`` would make of that dict.
"""

from __future__ import annotations

import json
from typing import Any

from zendesk_sim.wire.cursor import Key
from zendesk_sim.wire.hashing import mix
from zendesk_sim.wire.timestamps import format_ts

_ACTORS = (
    (360_001_482_211, "Sameer Patel", "209.119.38.228"),
    (360_001_482_212, "John Doe", "198.51.100.23"),
    (360_001_482_359, "Zoë Åström", "203.0.113.7"),
    (360_004_113_870, "José Núñez", "2001:db8::1f"),
    (360_004_113_871, "李雷", "198.51.100.77"),
    (360_009_201_004, "Priya Raman", "192.0.2.41"),
    (360_009_201_005, "O'Brien, Siobhán", "203.0.113.199"),
    (360_012_774_118, "Support Bot (API)", "192.0.2.10"),
    (900_000_000_017, 'Ana María "Anita" Ruiz', "198.51.100.5"),
    (900_000_000_018, "Kwame Mensah", "192.0.2.200"),
)
_PEOPLE = ("Bob Cat", "Alice Liddell", "Émile Zola", "Grace Hopper", "Ada Lovelace", "Mia Wong")

# (source_type, action, action_label, source_label, change_description); {p} is a
# person, {n} a number. Descriptions mirror the kinds seen in real exports.
_Event = tuple[str, str, str, str, str]
_EVENTS: tuple[_Event, ...] = (
    ("user", "update", "Updated", "{p}", "Role changed from End User to Administrator"),
    ("user", "update", "Updated", "{p}", "Email changed from {n}@old.example to {n}@example.com"),
    ("user", "create", "Created", "{p}", ""),
    ("user", "login", "Signed in", "{p}", "Successful sign-in using Zendesk password"),
    # A failed one (the wording is ours: OCSF's mapping keys only on "Successful sign-in")
    ("user", "login", "Signed in", "{p}", "Failed sign-in using Zendesk password: wrong password"),
    ("user", "destroy", "Deleted", "{p}", ""),
    ("user_setting", "update", "Updated", "Suspension state: {p}", "Suspended"),
    ("user_setting", "update", "Updated", "Suspension state: {p}", "Unsuspended"),
    (
        "rule",
        "update",
        "Updated",
        "Trigger: Notify requester of comment update",
        "Conditions changed\nActions changed",
    ),
    ("rule", "create", "Created", "Automation: Close ticket {n} days after solved", ""),
    ("rule", "destroy", "Deleted", "View: Unassigned tickets #{n}", ""),
    ("ticket", "destroy", "Deleted", "Ticket #{n}", ""),
    ("ticket", "exported", "Exported", "Ticket export", "Full JSON export requested"),
    ("api_token", "create", "Created", "API token", ""),
    (
        "api_token",
        "update",
        "Updated",
        "API token: token {n}",
        "description changed from not set to token {n}",
    ),
    ("account_setting", "update", "Updated", "Account Assumption", "Changed"),
    ("account_setting", "create", "Created", "Credit Card Redaction", "Enabled"),
    ("account_setting", "update", "Updated", "Password Requirements", "Changed from Low to High"),
    ("group", "update", "Updated", "Group: Tier {n}", 'Name changed from "Tier 1" to "Tier {n}"'),
)
# Zendesk's own housekeeping, done by actor -1 with no IP address.
_SYSTEM_EVENTS: tuple[_Event, ...] = (
    ("attachment", "destroy", "Deleted", "Attachment", ""),
    ("ticket", "update", "Updated", "Ticket #{n}", "Status changed from solved to closed"),
)
_ALL_EVENTS = _EVENTS + _SYSTEM_EVENTS
_ALL_ACTORS = (*_ACTORS, (-1, "Zendesk", None))
_SYSTEM_ACTOR = len(_ACTORS)


def _json_text(text: str) -> str:
    """A string as JSON, escaped as ``zendesk_sim.wire.responses`` encodes bodies."""
    return json.dumps(text, ensure_ascii=False)


# The tables above as JSON text, for ``fragment``. Escaping is per character and leaves
# "{p}" and "{n}" alone, so the escaped person goes in as text; each label is kept split
# at "{n}", to be joined with the record's number.
_EVENTS_JSON = tuple(tuple(_json_text(part) for part in event) for event in _ALL_EVENTS)
_ACTORS_JSON = tuple((str(actor_id), _json_text(name)) for actor_id, name, _ in _ALL_ACTORS)
_LABELS_JSON = tuple(
    tuple(
        tuple(tuple(label.replace("{p}", _json_text(person)[1:-1]).split("{n}")) for label in pair)
        for person in _PEOPLE
    )
    for pair in ((event[3], event[4]) for event in _EVENTS_JSON)
)
"""[event][person] -> (source_label, change_description), each split at "{n}"."""


class Content:
    """Record ``i``'s fields but its id and time, from ``seed`` (already ``mix``ed)."""

    def __init__(self, seed: int, base_url: str) -> None:
        self._seed = seed
        self._url_prefix = base_url.rstrip("/") + "/api/v2/audit_logs/"
        # The opening quote and escaped prefix: an id and ".json" need no escaping.
        self._url_json = _json_text(self._url_prefix)[:-1]

    def _draw(self, i: int) -> tuple[int, int, str | None, int, int, int]:
        """Record ``i``'s hashed choices: (event, actor, ip_address, person, number, source_id).

        Event, actor and person are indexes into _ALL_EVENTS, _ALL_ACTORS and _PEOPLE.
        """
        bits = mix(self._seed ^ (i * 0xA24BAED4963EE407))
        number = 1 + (bits >> 40) % 9000
        person = (bits >> 20) % len(_PEOPLE)
        if bits % 100 < 12:
            event = len(_EVENTS) + (bits >> 28) % len(_SYSTEM_EVENTS)
            actor, ip = _SYSTEM_ACTOR, None
        else:
            event = (bits >> 28) % len(_EVENTS)
            actor = (bits >> 8) % len(_ACTORS)
            ip = _ACTORS[actor][2]
            if (bits >> 4) % 10 == 0:  # the same admin from another network now and then
                ip = f"192.0.2.{(bits >> 50) % 254 + 1}"
        if _ALL_EVENTS[event][0] == "ticket":
            source_id = number
        else:
            source_id = 360_000_000_000 + (bits >> 24) % 10**9
        return event, actor, ip, person, number, source_id

    def record(self, i: int, key: Key) -> dict[str, Any]:
        """Record ``i`` as a fresh dict; ``key`` is its (created_at, id)."""
        created, record_id = key
        event, actor, ip, person_index, number, source_id = self._draw(i)
        source_type, action, label, source_label, description = _ALL_EVENTS[event]
        actor_id, actor_name, _ = _ALL_ACTORS[actor]
        person = _PEOPLE[person_index]
        return {
            "url": f"{self._url_prefix}{record_id}.json",
            "id": record_id,
            "action_label": label,
            "actor_id": actor_id,
            "source_id": source_id,
            "source_type": source_type,
            "source_label": source_label.format(p=person, n=number),
            "action": action,
            "change_description": description.format(p=person, n=number),
            "ip_address": ip,
            "created_at": format_ts(created),
            "actor_name": actor_name,
        }

    def fragment(self, i: int, key: Key) -> str:
        """``record(i, key)`` as the compact JSON text a response carries.

        The same text as ``json.dumps(record, ensure_ascii=False, separators=(",", ":"))``
        at a fraction of the cost (no dict, no encoder): the field order below is the dict's.
        """
        created, record_id = key
        rid = str(record_id)
        event, actor, ip, person, number, source_id = self._draw(i)
        source_type, action, label, _, _ = _EVENTS_JSON[event]
        source_label, description = _LABELS_JSON[event][person]
        actor_id, actor_name = _ACTORS_JSON[actor]
        n = str(number)
        ip_json = "null" if ip is None else f'"{ip}"'  # addresses need no escaping
        return (
            f'{{"url":{self._url_json}{rid}.json","id":{rid},'
            f'"action_label":{label},"actor_id":{actor_id},"source_id":{source_id},'
            f'"source_type":{source_type},"source_label":{n.join(source_label)},'
            f'"action":{action},"change_description":{n.join(description)},'
            f'"ip_address":{ip_json},"created_at":"{format_ts(created)}",'
            f'"actor_name":{actor_name}}}'
        )
