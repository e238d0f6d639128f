"""SQLite's and PostgreSQL's row upserts, straight to the driver: ``INSERT ... ON CONFLICT
DO UPDATE ... WHERE raw changed`` with the values converted here, as ``coltypes.db_time``
(SQLite's text: ``coltypes.sqlite_time``) and the JSON type would (SQLAlchemy's per-row
parameter processing was the largest cost of a backfill). Their SQL is written from
``audit_logs``'s names, quoted by the dialect, and built once a dialect (once a row count
for SQLite's multi-row VALUES).

SQLite's: a reader of the batch's existing rows and a writer of the new or changed ones
(multi-row VALUES, up to 1,000 rows a statement), which ``etl.storage.upserts.audit_logs``
joins; PostgreSQL's: one INSERT ... SELECT ... FROM jsonb_array_elements(batch) that counts
what it wrote.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from etl.records.audit import RAW_JSON
from etl.storage.limits import RowUpsert, raw_text
from etl.storage.schema.coltypes import UTCDateTime, db_time, sqlite_time
from etl.storage.schema.logs import audit_logs

_COLUMNS = [c.name for c in audit_logs.columns]
_DATETIMES = {c.name for c in audit_logs.columns if isinstance(c.type, UTCDateTime)}
_RAW = _COLUMNS.index(audit_logs.c.raw.name)
_CREATED, _SYNCED = audit_logs.c.created_at.name, audit_logs.c.synced_at.name
_ROW_VALUES = operator.itemgetter(*_COLUMNS)
# The existing (id, raw) pairs among some ids (one narrow range), raw as its stored text;
# and the writer of a batch's new or changed rows: the two halves of a dialect's upsert
# where it first reads what exists (``etl.storage.upserts.audit_logs``).
ExistingReader = Callable[[Connection, str, list[Any]], Iterable[Sequence[Any]]]
RowWriter = Callable[[Connection, Sequence[Mapping[str, Any]]], None]
# Whether every row of a batch (by id) is stored already with the same record.
StoredCheck = Callable[[Connection, str, Mapping[Any, Mapping[str, Any]]], bool]


@dataclass(frozen=True)
class _Names:
    """``audit_logs``'s names as a dialect writes them (quoted where it must)."""

    table: str
    columns: dict[str, str]  # by column name, in the table's order

    @classmethod
    def of(cls, dialect: Dialect) -> _Names:
        quote = dialect.identifier_preparer
        return cls(
            quote.format_table(audit_logs),
            {c.name: quote.quote(c.name) for c in audit_logs.columns},
        )

    def __hash__(self) -> int:  # the statements are cached by names
        return hash((self.table, *self.columns.values()))

    def __getitem__(self, column: sa.Column[Any]) -> str:
        return self.columns[column.name]

    def joined(self, names: Iterable[str]) -> str:
        return ", ".join(self.columns[name] for name in names)

    def on_conflict(self, compare: str, cast: str = "") -> str:
        """``ON CONFLICT (key) DO UPDATE`` every other column, unless ``raw`` is unchanged
        (``compare``: the dialect's null-safe "differs", between both sides ``cast``)."""
        key = [c.name for c in audit_logs.primary_key]
        updated = ", ".join(
            f"{quoted} = excluded.{quoted}"
            for name, quoted in self.columns.items()
            if name not in key
        )
        raw = self[audit_logs.c.raw]
        return (
            f"ON CONFLICT ({self.joined(key)}) DO UPDATE SET {updated} "
            f"WHERE {self.table}.{raw}{cast} {compare} excluded.{raw}{cast}"
        )


def _shape(count: int) -> int:
    """The statement size that serves ``count`` items: a power of two, so that a run sends
    a dozen shapes of statement, whatever its batches' sizes. Each shape is a statement
    compiled and kept by the driver (and here): one per size would let memory grow with
    the records a run writes."""
    return 1 << max(count - 1, 0).bit_length()


@functools.lru_cache(maxsize=16)
def _sqlite_select_existing(names: _Names, ids: int) -> str:
    account, record_id = names[audit_logs.c.account], names[audit_logs.c.id]
    return (
        f"SELECT {record_id}, {names[audit_logs.c.raw]} FROM {names.table} WHERE {account} = ? "
        f"AND {record_id} IN ({', '.join(['?'] * ids)}) AND {record_id} BETWEEN ? AND ?"
    )


def _sqlite_existing(
    names: _Names, conn: Connection, account: str, ids: list[Any]
) -> Iterator[tuple[Any, Any]]:
    """SQLite's reader: the query MySQL's reader sends through Core
    (``etl.storage.upserts.audit_logs``), straight to the driver, where SQLAlchemy's
    expanding ``IN`` cost more than the query."""
    size = _shape(len(ids))  # the last id again fills it: IN does not mind repeats
    params = (account, *ids, *[ids[-1]] * (size - len(ids)), ids[0], ids[-1])
    # raw as the stored text, which ``etl.storage.upserts.audit_logs.changed`` compares
    yield from conn.exec_driver_sql(_sqlite_select_existing(names, size), params)


# Rows per statement: 15,000 parameters, within SQLite's limit since 3.32 (32,766);
# fewer where an older library allows fewer (``_sqlite_rows_per_statement``).
_SQLITE_ROWS_PER_STATEMENT = 1000


def _fsp(column: sa.Column[Any]) -> int:
    assert isinstance(column.type, UTCDateTime)
    return column.type.fsp


class _TimeTexts:
    """A batch's times as text for the driver, each at its column's precision: the
    ``created_at`` and the ``synced_at`` that a page's rows share, each formatted once for
    a run of equal ones (records often share a second; formatting a datetime costs a
    microsecond)."""

    _CREATED_FSP = _fsp(audit_logs.c.created_at)
    _SYNCED_FSP = _fsp(audit_logs.c.synced_at)

    def __init__(self, text: Callable[[datetime, int], str]) -> None:
        self._text = text
        self._created: datetime | None = None
        self._created_text = ""
        self._synced: datetime | None = None
        self._synced_text = ""

    def created(self, moment: datetime) -> str:
        if moment != self._created:
            self._created, self._created_text = moment, self._text(moment, self._CREATED_FSP)
        return self._created_text

    def synced(self, moment: datetime) -> str:
        if moment is not self._synced:
            self._synced, self._synced_text = moment, self._text(moment, self._SYNCED_FSP)
        return self._synced_text


@functools.lru_cache(maxsize=16)
def _sqlite_upsert(names: _Names, rows: int) -> str:
    """The upsert of ``rows`` rows in one statement: one step of SQLite for all of them,
    so the GIL is released once per statement rather than once per row."""
    one = f"({', '.join('?' for _ in _COLUMNS)})"
    return (
        f"INSERT INTO {names.table} ({names.joined(_COLUMNS)}) VALUES {', '.join([one] * rows)} "
        + names.on_conflict("IS NOT")
    )


def _sqlite_rows_per_statement(driver_connection: Any) -> int:
    import sqlite3  # loaded already on SQLite; PostgreSQL and MariaDB runs never need it

    limit = int(driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return max(1, min(_SQLITE_ROWS_PER_STATEMENT, limit // len(_COLUMNS)))


def _sqlite_rows(names: _Names, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    created, synced = _COLUMNS.index(_CREATED), _COLUMNS.index(_SYNCED)
    params: list[Any] = []
    width = len(_COLUMNS)
    times = _TimeTexts(sqlite_time)
    for row in rows:
        at = len(params)
        params.extend(_ROW_VALUES(row))
        params[at + created] = times.created(params[at + created])
        params[at + synced] = times.synced(params[at + synced])
        params[at + _RAW] = raw_text(row)
    per_statement = _sqlite_rows_per_statement(conn.connection.driver_connection)
    step = per_statement * width
    whole = len(params) - len(params) % step
    if whole:
        statement = _sqlite_upsert(names, per_statement)
        chunks = [tuple(params[i : i + step]) for i in range(0, whole, step)]
        conn.exec_driver_sql(statement, chunks)
    # The rest in statements of powers of two rows (64 + 32 + 4 for 100): a few shapes.
    while whole < len(params):
        rows_left = (len(params) - whole) // width
        part = 1 << (rows_left.bit_length() - 1)
        end = whole + part * width
        conn.exec_driver_sql(_sqlite_upsert(names, part), tuple(params[whole:end]))
        whole = end


_PG_JSON_COLUMNS = [name for name in _COLUMNS if name != audit_logs.c.raw.name]
_PG_VALUES = operator.itemgetter(*_PG_JSON_COLUMNS)
_PG_CREATED = _PG_JSON_COLUMNS.index(_CREATED)
_PG_SYNCED = _PG_JSON_COLUMNS.index(_SYNCED)
_PG_CREATED_FSP = _fsp(audit_logs.c.created_at)


def _pg_columns(rows: Iterable[Mapping[str, Any]]) -> list[Sequence[Any]]:
    """Each row's values but ``raw``, for orjson to write into the batch: its own times,
    which orjson writes as ``isoformat`` does, where they are what ``db_time`` would give
    (UTC, ``created_at`` whole seconds: parse_record's, nearly always); else converted.
    Formatting each time in Python cost a microsecond a row."""
    values: list[Sequence[Any]] = []
    append = values.append
    for row in rows:
        columns: Sequence[Any] = _PG_VALUES(row)
        created, synced = columns[_PG_CREATED], columns[_PG_SYNCED]
        if created.microsecond or created.tzinfo is not UTC or synced.tzinfo is not UTC:
            converted = list(columns)
            converted[_PG_CREATED] = db_time(created, "postgresql", _PG_CREATED_FSP)
            converted[_PG_SYNCED] = db_time(synced, "postgresql")
            columns = converted
        append(columns)
    return values


def _pg_cast(column: sa.Column[Any]) -> str:
    """What a column's text from the JSON batch is cast to (text goes as it is)."""
    if column.name in _DATETIMES:
        return "::timestamptz"
    return "::bigint" if isinstance(column.type, sa.BigInteger) else ""


@functools.cache
def _pg_json_upsert(names: _Names) -> str:
    selected = ", ".join(
        f"(r->>{i}){_pg_cast(audit_logs.c[name])}" for i, name in enumerate(_PG_JSON_COLUMNS)
    )
    raw = names[audit_logs.c.raw]
    return (
        f"WITH written AS (INSERT INTO {names.table} ({names.joined(_PG_JSON_COLUMNS)}, {raw}) "
        f"SELECT {selected}, record FROM ROWS FROM (jsonb_array_elements(%s::jsonb), "
        "jsonb_array_elements(%s::jsonb)) AS batch (r, record) "
        # jsonb's text, not jsonb's equality, which calls 1 and 1.0 equal: its text keeps
        # the difference (numeric keeps its scale), sorts keys, and agrees with
        # etl.records.canonical, which decides on the other databases.
        + names.on_conflict("IS DISTINCT FROM", "::text")
        # An unchanged row is neither written nor returned; xmax is 0 on a new row only.
        # Counted by the server: a row per written row would cost both sides more (7%).
        + " RETURNING xmax = 0 AS new) SELECT count(*) FILTER (WHERE new), count(*) FROM written"
    )


def _postgresql_upsert(
    names: _Names, conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
) -> tuple[int, int]:
    """One INSERT ... SELECT ... ON CONFLICT whose rows come as two JSON array parameters,
    zipped by ``ROWS FROM``: the columns (``[account, id, ..., synced_at]`` per row, one
    encoding for the batch) and ``raw`` (the JSON text parse_record made, joined as it is).
    One round trip, no per-row work in the driver, and the statement counts the rows its
    ``RETURNING`` gives (new or changed), where the other dialects first read the rows that
    exist."""
    batch_rows = rows.values()
    # orjson, as for raw: text, integers, nulls and UTC times (4x the json module)
    columns = orjson.dumps(_pg_columns(batch_rows)).decode()
    raws = cast(list[str], [row.get(RAW_JSON) for row in batch_rows])  # parse_record's
    if None in raws:  # a record it altered has none: made here (``raw_text``)
        raws = [raw_text(row) for row in batch_rows]
    batch = (columns, "[" + ",".join(raws) + "]")
    inserted, written = conn.exec_driver_sql(_pg_json_upsert(names), batch).one()
    return inserted, written - inserted


@functools.cache
def _pg_json_changed(names: _Names) -> str:
    account, record_id = names[audit_logs.c.account], names[audit_logs.c.id]
    raw = names[audit_logs.c.raw]
    return (
        "SELECT count(*) FROM ROWS FROM (unnest(%s::bigint[]), jsonb_array_elements(%s::jsonb)) "
        # A look-up by the primary key a row, whatever the planner's statistics (LIMIT keeps
        # the subquery a nested loop: a join on the batch's ids scanned the account's rows).
        f"AS batch (id, record) LEFT JOIN LATERAL (SELECT {raw} AS raw FROM {names.table} "
        f"WHERE {account} = %s AND {record_id} = batch.id LIMIT 1) AS stored ON true "
        # the upsert's own test (``_pg_json_upsert``): a missing row's NULL differs too
        "WHERE stored.raw::text IS DISTINCT FROM batch.record::text"
    )


def _postgresql_unchanged(
    names: _Names, conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
) -> bool:
    """Whether the upsert would write none of ``rows``: one read of the rows that are new
    or changed, the records sent as the upsert sends them (``raw_text``, one JSON array)."""
    batch = "[" + ",".join(raw_text(row) for row in rows.values()) + "]"
    statement = _pg_json_changed(names)
    differing: int = conn.exec_driver_sql(statement, (list(rows), batch, account)).scalar_one()
    return differing == 0


def postgresql_unchanged(dialect: Dialect) -> StoredCheck:
    """PostgreSQL's check that a batch is stored as it is."""
    return functools.partial(_postgresql_unchanged, _Names.of(dialect))


def sqlite_rows(dialect: Dialect) -> tuple[ExistingReader, RowWriter]:
    """SQLite's reader of existing rows and writer of new or changed ones."""
    names = _Names.of(dialect)
    return functools.partial(_sqlite_existing, names), functools.partial(_sqlite_rows, names)


def postgresql_upsert(dialect: Dialect) -> RowUpsert:
    """PostgreSQL's upsert, which counts what it wrote."""
    return functools.partial(_postgresql_upsert, _Names.of(dialect))
