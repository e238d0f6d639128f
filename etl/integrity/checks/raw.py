"""A row's stored ``raw`` text against the record hash its ledger entry holds: what it
hashes to (``raw_digest``: the canonical form's SHA-256, as ``etl.records.canonical`` and
the ledger's writer make it) and whether it holds that record (``matches``). No database:
``verify`` (``etl.integrity.parallel.piece``) hands it the text its pages read,
``reconcile`` (``etl.integrity.reconcile_stored``) the day's.

``raw`` is parsed here with orjson (the json module for a record holding a float, since
orjson reads an integer past 64 bits as a float): the JSON type's own parsing costs more
than the rest of a row's check.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

from etl.records.canonical import canonical_json

_PLAIN = frozenset({str, int, bool, type(None)})
# What ``raw_digest`` gives a text that is no JSON record: equal to no record's hash.
UNREADABLE = b""
_loads, _dumps, _SORTED = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256


def parse_raw(text: str) -> Any:
    """A row's ``raw`` text as ``json.loads`` would give it (exact integers)."""
    value = orjson.loads(text)
    if type(value) is dict and _PLAIN.issuperset(map(type, value.values())):
        return value
    return json.loads(text)


def raw_digest(text: str | bytes) -> bytes:
    """SHA-256 of the canonical form of a row's ``raw`` text (``record_hash`` of what it
    parses to): orjson both ways for a record of plain values, the usual one.
    ``UNREADABLE`` for a text that is no JSON record (not JSON, or a number JSON cannot
    hold: ``1e400``, ``NaN``), which only an edit of the row can have stored."""
    try:
        value = _loads(text)
    except orjson.JSONDecodeError:  # also an integer past a double's range: json decides
        pass
    else:
        if type(value) is dict and _PLAIN.issuperset(map(type, value.values())):
            return _sha256(_dumps(value, option=_SORTED)).digest()
    try:
        return _sha256(canonical_json(json.loads(text)).encode()).digest()
    except (ValueError, RecursionError):  # not JSON, or NaN/Infinity, refused canonical
        return UNREADABLE


def matches(text: str | bytes, record: bytes) -> bool:
    """Whether a row's ``raw`` text holds the record whose hash is ``record``.

    First orjson both ways, keys sorted, whatever the values: that text is the canonical
    one unless the record holds a number orjson writes otherwise (a float with an
    exponent, ``-0.0``, an integer past 64 bits read as a float), and then it has an
    exponent or a ``-0.0`` the canonical text never has, so a match is proof; the exact
    ``raw_digest`` decides the rest."""
    return parsed_match(text, record)[0]


def parsed_match(text: str | bytes, record: bytes) -> tuple[bool, Any]:
    """``matches``, and the text as orjson parsed it when that proved the match (None
    otherwise): the derived columns' check reads it too (``derived.differing``)."""
    try:
        value = _loads(text)
        if _sha256(_dumps(value, option=_SORTED)).digest() == record:
            return True, value
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # encode: nested past 254
        pass
    return raw_digest(text) == record, None
