"""The columns derived from ``raw``, checked against what the job would store for it.

Auditors query ``action``, ``actor_id``, ``created_at`` and the rest with plain SQL, not
``raw``: a DBA who sets ``action = 'update'`` where it was ``destroy`` changes every SQL
answer. So ``verify`` reads them beside ``raw`` (one JSON array a row, made by the
database: ``sql``), and compares them with ``raw``'s own values (``differing``).

Fast path: a row's values are, in the common case, ``raw``'s own fields as they are (the
times as the database writes them back, ``time_text``). SQLite writes its array as orjson
does (compact), so ``raw``'s fields written by orjson are compared with its bytes, the
array not parsed; PostgreSQL's and MariaDB's (a space after each comma) are parsed and
compared value by value, each of the same type (exact: ``1`` is not ``true`` nor
``1.0``), or as orjson writes them when one is not a plain value. Only when they differ is
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
import sqlalchemy as sa

from etl.integrity.checks.usual import zendesk_time
from etl.records.access import identifier, parse_access_record, status_value, url_path
from etl.records.audit import Reject, parse_created_at, parse_record
from etl.storage.schema.coltypes import sqlite_time
from etl.storage.schema.logs import access_logs, audit_logs

_loads, _dumps, _SORTED = orjson.loads, orjson.dumps, orjson.OPT_SORT_KEYS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Values whose ``==`` between two of the same type is their JSON text's equality (a float's
# is not: ``-0.0 == 0.0``; nor a dict's or a list's, whose members may be of other types)
_PLAIN = frozenset({str, int, bool, type(None)})


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
    # BIGINT columns the writer fills from the record's field of the same name, a float of
    # 2**53 or more (a float that names no one integer) stored as NULL (``_either``)
    big_integers: frozenset[str] = frozenset()
    # the integer columns: SQLite keeps a text or a real a DBA writes in one, where the
    # writer stores only integers and NULL (``_sqlite_value``)
    integers: frozenset[str] = frozenset()

    @functools.cached_property
    def time_index(self) -> int:
        return self.columns.index(self.time)

    @functools.cached_property
    def computed_at(self) -> tuple[tuple[int, Callable[[dict[str, Any]], Any]], ...]:
        return tuple((self.columns.index(name), compute) for name, compute in self.computed)


def _integers(table: sa.Table) -> frozenset[str]:
    return frozenset(c.name for c in table.columns if isinstance(c.type, sa.Integer))


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
    big_integers=frozenset({"actor_id", "source_id"}),
    integers=_integers(audit_logs),
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
    (
        ("path", lambda record: _path(record.get("url"))),
        # the writer's own rules where a field's value is not the column's ("" is NULL;
        # a status past INTEGER's range is NULL, which SQLite's column could hold)
        ("user_id", lambda record: identifier(record.get("user_id"))),
        ("status", lambda record: status_value(record.get("status"))),
    ),
    big_integers=frozenset({"bytes_sent"}),
    integers=_integers(access_logs),
)
STREAMS = {"audit_logs": AUDIT, "access_logs": ACCESS}


def sql(dialect: str, derived: Derived, quote: Callable[[str], str], mariadb: bool) -> str:
    """The SQL of a row's derived columns as one JSON array (text), times as
    ``time_text`` writes them. For MariaDB's queries with parameters, ``%`` doubled."""
    parts = []
    for name in derived.columns:
        column = quote(name)
        if dialect == "sqlite":
            column = _sqlite_value(column, name in derived.json_columns, name in derived.integers)
        elif name == derived.time:
            column = _time_sql(dialect, column, derived.fsp, mariadb)
        elif name in derived.json_columns:
            column = {"postgresql": "{}"}.get(dialect, "JSON_EXTRACT({}, '$')").format(column)
        elif dialect == "postgresql" and name not in derived.integers:
            # as text (a relabelling of varchar's): a column a DBA made jsonb, ``"update"``
            # or ``null``, is written as that text, not as the JSON it holds
            column = f"{column}::text"
        parts.append(column)
    listed = ", ".join(parts)
    if dialect == "sqlite":  # its bytes: a text a DBA stored as other than UTF-8 is read
        return f"CAST(json_array({listed}) AS BLOB)"
    if dialect == "postgresql":  # pg_catalog's: one in another schema taking the columns'
        # types would be an exact match, taken over its ``VARIADIC "any"``
        return f"pg_catalog.json_build_array({listed})::text"
    return f"JSON_ARRAY({listed})"


# What SQLite's array holds for a value a DBA stored that its JSON functions refuse (a
# BLOB; in a JSON column, a text that is not JSON): a text of one byte that is not UTF-8,
# read as a lone surrogate (``_exact``), which no record's field gives (the writer stores
# none), so the column is named as differing and verify goes on.
_UNREADABLE_SQL = "CAST(X'FF' AS TEXT)"


def _sqlite_value(column: str, json_column: bool, integer: bool) -> str:
    """A column's value for SQLite's ``json_array`` (a time is stored as ``time_text``'s
    text): as it is, a JSON column's as JSON, but never one the function refuses. An
    integer column holding a text or a real (which ``json_array`` would write as ``raw``'s
    own ``"abc"`` or ``1.5``, where the writer stores NULL) reads as no value it could hold."""
    if integer:  # the form below, which SQLite evaluates fastest
        return (
            f"CASE WHEN typeof({column}) = 'integer' OR {column} IS NULL THEN {column} "
            f"ELSE {_UNREADABLE_SQL} END"
        )
    if json_column:
        return (
            f"CASE WHEN {column} IS NULL THEN NULL WHEN typeof({column}) = 'blob' "
            f"THEN {_UNREADABLE_SQL} WHEN json_valid({column}) THEN json({column}) "
            f"ELSE {_UNREADABLE_SQL} END"
        )
    # a text column (the time's too) rebuilt with another affinity keeps a DBA's number,
    # which ``json_array`` would write as ``raw``'s own ``7`` or ``1.5`` (the writer: NULL).
    # This form costs SQLite least (``CASE typeof(...) WHEN``: a fifth more of the array).
    return (
        f"CASE WHEN typeof({column}) = 'text' OR {column} IS NULL THEN {column} "
        f"ELSE {_UNREADABLE_SQL} END"
    )


def _time_sql(dialect: str, column: str, fsp: int, mariadb: bool) -> str:
    if dialect == "postgresql":
        fraction = ".US" if fsp else ""
        # none for a time before year 1 (to_char writes 1 BC as "0001"): never a stored one
        form = f'YYYY-MM-DD"T"HH24:MI:SS{fraction}"Z"'
        written = f"pg_catalog.to_char({column} AT TIME ZONE 'UTC', '{form}')"
        return f"CASE WHEN {column} >= '0001-01-01 00:00:00+00'::timestamptz THEN {written} END"
    fraction = ".%%f" if fsp else ""
    return f"DATE_FORMAT({column}, '%%Y-%%m-%%dT%%H:%%i:%%s{fraction}Z')"


def time_text(value: object, fsp: int) -> str | None:
    """A record's time as the database gives it back (``sqlite_time``'s text), or None.

    A time as Zendesk writes it (``2026-10-07T01:13:06Z``) is that text already (to the
    second) once it is a real time: checked by ``fromisoformat`` alone, no ``datetime``
    written back (two thirds of a row's comparison when every row has its own second)."""
    if zendesk_time(value):  # else (the 30th of February, another form) the exact path
        return value if fsp == 0 else f"{value[:19]}.{'0' * fsp}Z"
    return _time_text(value, fsp)


@functools.lru_cache(maxsize=4096)
def _time_text(value: object, fsp: int) -> str | None:
    moment = parse_created_at(value)
    return None if moment is None else sqlite_time(moment, fsp)


def differing(
    derived: Derived,
    text: str | bytes,
    values: str | bytes | list[Any] | None,
    compact: bool = False,
    record: Any = None,
) -> list[str]:
    """The derived columns whose stored values (``values``: the JSON array read) differ
    from what the job stores for the record ``text`` (``raw``, already matched with its
    ledger entry): none in the common case. ``compact``: the array is written as orjson
    writes it (SQLite's), so compared as bytes when equal. ``values`` may come parsed
    already (a list: MariaDB's pages, ``etl.integrity.mariadb.frames``). ``record``:
    ``text`` as orjson parsed it, when the caller has (else parsed here)."""
    if record is None:
        try:
            record = _loads(text)
        except orjson.JSONDecodeError:  # an integer past 64 bits: the exact derivation says
            return _exact(derived, text, values)
    if type(record) is not dict or values is None:
        return _exact(derived, text, values)
    expected = list(map(record.get, derived.columns))
    at = derived.time_index
    expected[at] = time_text(expected[at], derived.fsp)
    if expected[at] is None:  # no row of this table (its time is NOT NULL): the writer says
        return _exact(derived, text, values)
    for index, compute in derived.computed_at:
        expected[index] = compute(record)
    if isinstance(values, list):
        stored: Any = values
    else:
        if compact:
            data = values.encode() if type(values) is str else values
            if _dumps(expected) == data:
                return []
        try:
            stored = _loads(values)
        except orjson.JSONDecodeError:
            return _exact(derived, text, values)
    if type(stored) is list:
        types = list(map(type, expected))
        if stored == expected and types == list(map(type, stored)) and _PLAIN.issuperset(types):
            return []
        if _dumps(expected, option=_SORTED) == _dumps(stored, option=_SORTED):
            return []
    return _exact(derived, text, values)


def _exact(
    derived: Derived, text: str | bytes, values: str | bytes | list[Any] | None
) -> list[str]:
    """The writer's derivation, each column compared as the database gives it back."""
    record = json.loads(text)
    row = derived.parse(record, "", _EPOCH)
    if isinstance(row, Reject):  # stored by a release with other rules: nothing to compare,
        return _other_stream(derived, record)  # unless it is another table's record (moved)
    stored: Any = values
    if not isinstance(values, list):
        if type(values) is bytes:  # a text stored as other than UTF-8: its bytes kept apart
            values = values.decode("utf-8", "surrogateescape")
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
        if not same and not (name in derived.big_integers and _either(record.get(name), value)):
            found.append(name)
    return found


def _other_stream(derived: Derived, record: Any) -> list[str]:
    """For a row whose ``raw`` its own table's writer rejects: its table named as what
    differs when another stream's writer stores that record (a row a DBA moved from the
    audit table to the access table, which no entry says), else nothing (``_exact``)."""
    for name, other in STREAMS.items():
        if other is not derived and not isinstance(other.parse(record, "", _EPOCH), Reject):
            return [f"its table (raw is a record of {name})"]
    return []


def _either(member: object, value: object) -> bool:
    """Whether ``value`` is NULL where the record's ``raw`` as stored holds an integer of
    2**53 or more: the ledger's canonical form writes such an integer and the float of
    its value alike (``1e16`` as ``10000000000000000``), and PostgreSQL's jsonb keeps
    ``1e16`` as the integer, so the record stored may have been the float, which the
    writer stores as NULL (it names no one integer). A float in ``raw`` is never read as
    the integer: its text says which it was."""
    return value is None and type(member) is int and abs(member) >= _BIG


_BIG = 2**53


def _path(url: object) -> str | None:
    return url_path(url) if type(url) is str else None


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
