"""The columns derived from ``raw``, checked against what the job would store for it.

Auditors query ``action``, ``actor_id``, ``created_at`` and the rest with plain SQL, not
``raw``: a DBA who sets ``action = 'update'`` where it was ``destroy`` changes every SQL
answer. So ``verify`` reads them beside ``raw`` (one JSON array a row, made by the
database: ``sql``), and compares them with ``raw``'s own values (``differing``).

Fast path: a row's values are, in the common case, ``raw``'s own fields as they are (the
times as the database writes them back, ``time_text``), so the two arrays are compared as
orjson writes them (exact: ``1`` is not ``true`` nor ``1.0``). Only when they differ is
the writer's own derivation run (``etl.records.audit.parse_record``, the access log's
``parse_access_record``: never a second copy of its rules), and each column compared
exactly with what it would store, after the database's round trip.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from etl.records.access import parse_access_record, url_path
from etl.records.audit import Reject, parse_created_at, parse_record
from etl.storage.schema.coltypes import sqlite_time

_loads, _dumps, _SORTED = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Derived:
    """A stream's derived columns in the order read, the time column and its precision,
    and the writer's derivation of a row from a record."""

    columns: tuple[str, ...]
    time: str
    fsp: int
    parse: Callable[[object, str, datetime], dict[str, Any] | Reject]
    json_columns: frozenset[str] = frozenset()
    # columns a record's field of the same name does not give as it is (``path``): the
    # writer's own function of the record, for the fast path
    computed: tuple[tuple[str, Callable[[dict[str, Any]], Any]], ...] = ()


AUDIT = Derived(
    (
        "action",
        "action_label",
        "actor_id",
        "actor_name",
        "change_description",
        "created_at",
        "ip_address",
        "source_id",
        "source_label",
        "source_type",
        "url",
    ),
    "created_at",
    0,
    parse_record,
)
ACCESS = Derived(
    (
        "timestamp",
        "user_id",
        "ip_address",
        "method",
        "url",
        "path",
        "status",
        "authorization_type",
        "client",
        "referer",
        "bytes_sent",
        "category",
        "summary",
        "origin_service",
        "graphql",
    ),
    "timestamp",
    6,
    parse_access_record,
    frozenset({"graphql"}),
    (("path", lambda record: _path(record.get("url"))),),
)
STREAMS = {"audit_logs": AUDIT, "access_logs": ACCESS}


def sql(dialect: str, derived: Derived, quote: Callable[[str], str], mariadb: bool) -> str:
    """The SQL of a row's derived columns as one JSON array (text), times as
    ``time_text`` writes them. For MariaDB's queries with parameters, ``%`` doubled."""
    parts = []
    for name in derived.columns:
        column = quote(name)
        if name == derived.time:
            column = _time_sql(dialect, column, derived.fsp, mariadb)
        elif name in derived.json_columns:
            column = {"sqlite": "json({})", "postgresql": "{}"}.get(
                dialect, "JSON_EXTRACT({}, '$')"
            ).format(column)
        parts.append(column)
    listed = ", ".join(parts)
    if dialect == "sqlite":
        return f"json_array({listed})"
    if dialect == "postgresql":
        return f"json_build_array({listed})::text"
    return f"JSON_ARRAY({listed})"


def _time_sql(dialect: str, column: str, fsp: int, mariadb: bool) -> str:
    if dialect == "sqlite":
        return column  # stored as ``sqlite_time``'s text
    if dialect == "postgresql":
        fraction = ".US" if fsp else ""
        return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS{fraction}"Z"')"""
    fraction = ".%%f" if fsp else ""
    return f"DATE_FORMAT({column}, '%%Y-%%m-%%dT%%H:%%i:%%s{fraction}Z')"


@functools.lru_cache(maxsize=4096)
def time_text(value: object, fsp: int) -> str | None:
    """A record's time as the database gives it back (``sqlite_time``'s text), or None."""
    moment = parse_created_at(value)
    return None if moment is None else sqlite_time(moment, fsp)


def differing(derived: Derived, text: str | bytes, values: str | bytes | None) -> list[str]:
    """The derived columns whose stored values (``values``: the JSON array read) differ
    from what the job stores for the record ``text`` (``raw``, already matched with its
    ledger entry): none in the common case."""
    try:
        stored = _loads(values) if values is not None else None
        record = _loads(text)
    except orjson.JSONDecodeError:  # an integer past 64 bits: the exact derivation reads it
        return _exact(derived, text, values)
    if type(record) is dict and type(stored) is list:
        get, time = record.get, derived.time
        expected = [
            time_text(get(name), derived.fsp) if name == time else get(name)
            for name in derived.columns
        ]
        for name, compute in derived.computed:
            expected[derived.columns.index(name)] = compute(record)
        if _dumps(expected, option=_SORTED) == _dumps(stored, option=_SORTED):
            return []
    return _exact(derived, text, values)


def _exact(derived: Derived, text: str | bytes, values: str | bytes | None) -> list[str]:
    """The writer's derivation, each column compared as the database gives it back."""
    record = json.loads(text)
    row = derived.parse(record, "", _EPOCH)
    if isinstance(row, Reject):  # stored by a release with other rules: nothing to compare
        return []
    try:
        stored = json.loads(values) if values is not None else None
    except ValueError:
        stored = None
    if type(stored) is not list or len(stored) != len(derived.columns):
        return list(derived.columns)
    found = []
    for name, value in zip(derived.columns, stored, strict=True):
        want = row[name]
        if name == derived.time:
            want = sqlite_time(want, derived.fsp)
        if name in derived.json_columns:
            same = _canonical(value) == _canonical(want)
        else:
            same = type(value) is type(want) and value == want
        if not same:
            found.append(name)
    return found


def _path(url: object) -> str | None:
    return url_path(url) if type(url) is str else None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
