"""Turn one audit-log record from the API into a row, or into a ``Reject``.

Only what makes a record unstorable rejects it: no integer ``id`` (the key), no
usable ``created_at`` (the watermark's clock), a value JSON cannot carry (NaN,
Infinity: no database's JSON column takes it), nesting deeper than ``MAX_JSON_DEPTH``
(MariaDB's JSON check refuses 32 levels), or a text longer than its bounded
column (``action``, ``ip_address``, ``source_type``; lengths from ``etl.common.fields``),
checked on every database alike, SQLite too, so all three keep the same records.
``created_at`` is stored to the whole second (what Zendesk sends); ``raw`` keeps the
exact text, fractions included. Any other field of the wrong type
is stored as NULL; the record is always kept in ``raw``, so nothing Zendesk sends
is lost, including fields it adds later. The one alteration: a character no database
can store becomes U+FFFD in ``raw`` and the columns, on every database alike, so that
one odd record can never stop the log. Those are NUL (U+0000), which PostgreSQL takes
neither in text nor in JSONB, and a lone surrogate (JSON's ``"\\ud800"`` escape decodes
to one), which is not UTF-8 at all. A reject's ``raw`` is the record's exact JSON text
(ASCII-escaped, so both are harmless there).

A row's ``raw`` text is compact JSON with other characters as UTF-8, not ``\\u`` escapes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from etl.common.fields import AUDIT_TEXT_LENGTHS
from etl.records.canonical import canonical_json

TEXT_FIELDS = (
    "action",
    "action_label",
    "actor_name",
    "change_description",
    "ip_address",
    "source_label",
    "source_type",
    "url",
)
INTEGER_FIELDS = ("actor_id", "source_id")
# Not a column: ``raw`` as compact JSON text, exactly what the store would write for it,
# made while checking the record; the store uses it instead of serializing ``raw`` again.
RAW_JSON = "raw_json"
# Not a column either: True when ``RAW_JSON`` is the record's canonical text
# (``etl.records.canonical``: a dict of plain values, its keys sorted), as the parser found
# while encoding it; the ledger then hashes that text without checking the values again.
RAW_CANONICAL = "raw_canonical"
# Not a column either, set with ``RAW_CANONICAL``: the SHA-256 of that text as UTF-8, which
# is the record's ledger hash (``etl.records.chain.record_hash``), made here from the bytes
# orjson wrote: a fetcher thread hashes it, not the thread that writes the ledger.
RAW_DIGEST = "raw_digest"
# The text columns of bounded length (characters, on every database alike): a longer
# value rejects its record, on SQLite too, so that every database keeps the same records.
_LENGTHS = AUDIT_TEXT_LENGTHS
# Bounded by what a BIGINT column holds.
_BIGINT = 2**63
# A float names one integer only below 2**53: from there, 9007199254740993.0 decodes as
# 2**53 (...992.0), and two records would be stored as one row (the one read last kept).
_EXACT_FLOAT = float(2**53)
_DIGITS = re.compile(r"\A\s*-?[0-9]+\s*\Z")  # ASCII only: int() also takes "١٢", not "²"
# What json.dumps(raw, allow_nan=False, default=str, separators=(",", ":"),
# ensure_ascii=False, sort_keys=True) uses, made once: the text orjson makes, for what
# orjson refuses; unsorted only for keys that do not sort (not all text).
_ENCODER = json.JSONEncoder(
    allow_nan=False, default=str, separators=(",", ":"), ensure_ascii=False, sort_keys=True
)
_UNSORTED = json.JSONEncoder(
    allow_nan=False, default=str, separators=(",", ":"), ensure_ascii=False
)
_SORT_KEYS = orjson.OPT_SORT_KEYS
_sha256 = hashlib.sha256
# The types of a Zendesk record's values: orjson encodes these exactly (never a float,
# which could be NaN: orjson would write it as null).
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
# NUL, or a surrogate on its own (one of a pair is joined with the other by json.loads).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
# Levels of objects and arrays a record may nest, itself included: MariaDB's JSON_VALID,
# which checks its JSON columns, refuses 32. Checked on every database alike, first,
# without recursion: a record nested thousands deep is a reject like any other.
MAX_JSON_DEPTH = 31


@dataclass(frozen=True)
class Reject:
    """A record that cannot be stored, why, and its text as it came."""

    record_id: str | None
    reason: str
    raw: str  # the record as JSON text, whatever it was


def parse_record(raw: object, account: str, synced_at: datetime) -> dict[str, Any] | Reject:
    if not isinstance(raw, dict):
        if isinstance(raw, list) and _depth(raw) > MAX_JSON_DEPTH:
            return Reject(None, "record is a JSON list, not an object", _deep_dump(raw))
        return Reject(None, f"record is a JSON {type(raw).__name__}, not an object", _dump(raw))
    plain = _PLAIN_TYPES.issuperset(map(type, raw.values()))
    if not plain:
        depth = _depth(raw)
        if depth > MAX_JSON_DEPTH:
            why = f"nested {depth} levels deep; the databases keep at most {MAX_JSON_DEPTH}"
            return Reject(_text_id(raw.get("id")), why, _deep_dump(raw))
    try:
        text, maybe_unstorable, data = _encode_bytes(raw, plain)
    except ValueError:
        return Reject(
            _text_id(raw.get("id")), "holds NaN or Infinity, which JSON cannot store", _dump(raw)
        )
    record_id = _integer(raw.get("id"))
    if record_id is None:
        reason = "no id" if raw.get("id") is None else "id is not an integer"
        return Reject(_text_id(raw.get("id")), reason, _dump(raw))
    created_at = parse_created_at(raw.get("created_at"))
    if created_at is None:
        return Reject(str(record_id), "no usable created_at", _dump(raw))
    clean = not (maybe_unstorable and _has_unstorable(raw))
    stored: dict[Any, Any] = raw if clean else _storable(raw)
    row: dict[str, Any] = {"account": account, "id": record_id, "created_at": created_at}
    for name in TEXT_FIELDS:
        value = stored.get(name)
        row[name] = value if isinstance(value, str) else None
    for name in INTEGER_FIELDS:
        row[name] = _integer(stored.get(name))
    for name, limit in _LENGTHS.items():
        value = row[name]
        if value is not None and len(value) > limit:
            why = f"{name} has {len(value)} characters, the column holds {limit}"
            return Reject(str(record_id), why, _dump(raw))
    row["raw"] = stored
    row["synced_at"] = synced_at
    if clean:
        row[RAW_JSON] = text
        if plain and type(raw) is dict:
            row[RAW_CANONICAL] = True
            row[RAW_DIGEST] = _sha256(text.encode() if data is None else data).digest()
    return row


def _encode(raw: dict[Any, Any], plain: bool | None = None) -> tuple[str, bool]:
    text, maybe_unstorable, _ = _encode_bytes(raw, plain)
    return text, maybe_unstorable


def _encode_bytes(raw: dict[Any, Any], plain: bool | None = None) -> tuple[str, bool, bytes | None]:
    """``raw`` as compact JSON text, keys sorted, and whether it may hold a NUL or a lone
    surrogate (checked exactly only then); ValueError for NaN or Infinity.

    Sorted, so that a record of plain values is stored as its canonical text
    (``etl.records.canonical``): its ledger hash is the SHA-256 of the very text stored,
    made once, and ``verify`` hashes the text SQLite and MariaDB give back without
    parsing it (PostgreSQL's ``jsonb`` sorts keys too).

    A record of plain values, as Zendesk's are, goes to orjson: six times faster than the
    json module, whose checks this needs for the rest (floats, nesting), and for what
    orjson refuses (a lone surrogate, an integer past 64 bits, a key that is not text).
    ``plain``: whether every value of ``raw`` is of ``_PLAIN_TYPES``, if the caller knows.
    """
    if plain is None:
        plain = _PLAIN_TYPES.issuperset(map(type, raw.values()))
    if plain:
        try:
            data = orjson.dumps(raw, option=_SORT_KEYS)
        except TypeError:
            pass
        else:  # a NUL is escaped; orjson refuses surrogates
            text = data.decode()
            return text, "\\u0000" in text, data
    try:
        text = _ENCODER.encode(raw)
    except TypeError:  # keys of several types (not from JSON): they do not sort
        text = _UNSORTED.encode(raw)
    return text, "\\u0000" in text or _UNSTORABLE.search(text) is not None, None


def parse_created_at(value: object) -> datetime | None:
    """Zendesk sends ``YYYY-MM-DDTHH:MM:SSZ``; accept any ISO 8601 time with an offset,
    and RFC 3339's lowercase ``z`` (which ``fromisoformat`` refuses)."""
    if not isinstance(value, str):
        return None
    if len(value) > _TIME_TEXT:  # not a time a cache should keep alive
        return _parse_time(value)
    return _parse_recent_time(value)


# A record's time is read three or four times on its way (the page's checks, the pages'
# progress, the row) and records often share a second: a recent text is parsed once. Pure
# and its results immutable, so the fetcher threads share it.
_TIME_TEXT = 40  # characters: an ISO 8601 time with fractions and an offset fits


@functools.lru_cache(maxsize=4096)
def _parse_recent_time(value: str) -> datetime | None:
    return _parse_time(value)


def _parse_time(value: str) -> datetime | None:
    if value.endswith("z"):
        value = value[:-1] + "Z"
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is UTC:  # what Zendesk's "Z" gives: nothing to convert
            return parsed
        if parsed.tzinfo is None:
            return None
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved across UTC
        return None


def _integer(value: object) -> int | None:
    if type(value) is int:  # the usual case, first
        return value if -_BIGINT <= value < _BIGINT else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_FLOAT:
        result = int(value)  # connectors re-emit ids as 6139157572367.0
    elif isinstance(value, str) and _DIGITS.match(value):
        result = int(value)
    else:
        return None
    return result if -_BIGINT <= result < _BIGINT else None


def _text_id(value: object) -> str | None:
    return None if value is None else _UNSTORABLE.sub(REPLACEMENT, str(value))[:64]


def _has_unstorable(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    return False


def _storable(value: Any) -> Any:
    """A copy of ``value`` with every unstorable character in its strings (keys too)
    replaced."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _depth(value: dict[Any, Any] | list[Any]) -> int:
    """Levels of objects and arrays in ``value``, itself included; without recursion."""
    deepest = 0
    todo: list[tuple[Any, int]] = [(value, 1)]
    while todo:
        container, depth = todo.pop()
        deepest = max(deepest, depth)
        children = container.values() if isinstance(container, dict) else container
        todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _deep_dump(raw: object) -> str:
    """A reject's text for a value too deep for the json module: canonical, ASCII."""
    return canonical_json(raw, ensure_ascii=True, allow_nan=True)


def _dump(raw: object) -> str:
    return json.dumps(raw, sort_keys=True, default=str)
