"""The per-dialect row upserts: a batch's rows written with one dialect-native upsert keyed
on ``(account, id)`` that refuses to rewrite an unchanged row, saying how many were
inserted and how many updated.

PostgreSQL's upsert counts what it wrote itself; on SQLite and MySQL the batch's existing
``(id, raw)`` pairs are read first, in the same transaction, and only new or changed rows
are sent. SQLite's and PostgreSQL's go straight to the driver (multi-row VALUES, up to
1,000 rows a statement; one INSERT ... SELECT ... FROM jsonb_array_elements(batch));
MySQL's through SQLAlchemy Core.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from etl.limits import RowUpsert, byte_batches, max_packet, raw_text
from etl.records import RAW_JSON
from etl.schema import MYSQL_DIALECTS, UTCDateTime, audit_logs, db_time, dialect_insert

# Ids per "which of these exist?" query; far below every dialect's bound-parameter limit.
_ID_CHUNK = 500
_GAP_FACTOR = 64  # a gap this many times the median one starts a new id range
_MISSING = object()


def _id_ranges(ids: list[Any], size: int) -> Iterator[list[Any]]:
    """Sorted ``ids`` in chunks of at most ``size`` that are each one narrow range.

    A batch may hold pages of distant slices: one chunk spanning them would make the
    ``BETWEEN`` scan everything stored in between. Chunks break at gaps far wider than
    the typical gap between neighbours.
    """
    if len(ids) < 2:
        if ids:
            yield ids
        return
    gaps = sorted(b - a for a, b in itertools.pairwise(ids))
    wide = max(gaps[len(gaps) // 2] * _GAP_FACTOR, 1)
    chunk = [ids[0]]
    for previous, record_id in itertools.pairwise(ids):
        if len(chunk) >= size or record_id - previous > wide:
            yield chunk
            chunk = []
        chunk.append(record_id)
    yield chunk


def _changed_rows_upsert(read: ExistingReader, write: RowWriter) -> RowUpsert:
    """An upsert that first reads the batch's existing ``(id, raw)`` pairs with ``read``,
    then sends only the new or changed rows to ``write``; it says (inserted, updated)."""

    def upsert(
        conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
    ) -> tuple[int, int]:
        existing: dict[Any, Any] = {}
        for chunk in _id_ranges(sorted(rows), _ID_CHUNK):  # each chunk one narrow range
            for record_id, raw in read(conn, account, chunk):
                existing[record_id] = raw
        changed: list[Mapping[str, Any]] = []
        inserted = 0
        for record_id, row in rows.items():
            old = existing.get(record_id, _MISSING)
            if old is _MISSING:
                inserted += 1
                changed.append(row)
            elif old != row["raw"]:
                changed.append(row)
        if changed:
            write(conn, changed)
        return inserted, len(changed) - inserted

    return upsert


def _mysql_rows() -> tuple[ExistingReader, RowWriter]:
    """MySQL's reader and writer of rows, through SQLAlchemy Core (no fast path there)."""
    existing = sa.select(audit_logs.c.id, audit_logs.c.raw).where(
        audit_logs.c.account == sa.bindparam("account"),
        audit_logs.c.id.in_(sa.bindparam("ids", expanding=True)),
        # Redundant, but it keeps the lookup on one narrow range of the primary key
        # whatever the planner's statistics (a new table has none). SQLite's has it too.
        audit_logs.c.id.between(sa.bindparam("lo"), sa.bindparam("hi")),
    )
    upsert = _mysql_rows_upsert()

    def read(conn: Connection, account: str, ids: list[Any]) -> Iterable[Sequence[Any]]:
        params = {"account": account, "ids": ids, "lo": ids[0], "hi": ids[-1]}
        return conn.execute(existing, params)

    def write(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        packet = max_packet(conn)
        assert packet is not None
        # Each statement well under the server's packet: a larger one closes the connection.
        for batch in byte_batches(rows, packet // 2):
            conn.execute(upsert, [_columns_only(row) for row in batch])

    return read, write


def _mysql_rows_upsert() -> sa.Executable:
    """INSERT ... or update every column but the key, unless ``raw`` is unchanged: the
    one upsert that goes through SQLAlchemy Core (SQLite and PostgreSQL have fast paths)."""
    table = audit_logs
    columns = [c.name for c in table.columns if c.name not in ("account", "id")]
    my = dialect_insert("mysql", table)
    unchanged = table.c.raw.op("<=>")(my.inserted.raw)
    # MySQL assigns left to right and later expressions see earlier results:
    # raw goes last so that every IF still compares against the old raw.
    assignments: list[tuple[str, Any]] = [
        (name, sa.func.IF(unchanged, table.c[name], my.inserted[name]))
        for name in columns
        if name != "raw"
    ]
    assignments.append(("raw", my.inserted.raw))
    upsert: sa.Executable = my.on_duplicate_key_update(assignments)
    return upsert


# -- the fast row paths ----------------------------------------------------------------------
# SQLite's and PostgreSQL's ``INSERT ... ON CONFLICT DO UPDATE ... WHERE raw changed``, sent
# straight to the driver with values converted here (what UTCDateTime and the JSON type
# would do): SQLAlchemy's per-row parameter processing was the largest cost of a backfill.
# Their SQL is written from ``audit_logs``'s names, quoted by the dialect, once a dialect.

_COLUMNS = [c.name for c in audit_logs.columns]
_DATETIMES = {c.name for c in audit_logs.columns if isinstance(c.type, UTCDateTime)}
_RAW = _COLUMNS.index(audit_logs.c.raw.name)
_ROW_VALUES = operator.itemgetter(*_COLUMNS)
# Upserts a batch's rows (by id, deduplicated) and says how many were (inserted, updated).
# The existing (id, raw) pairs among some ids (one narrow range), raw as the JSON type gives it.
ExistingReader = Callable[[Connection, str, list[Any]], Iterable[Sequence[Any]]]
RowWriter = Callable[[Connection, Sequence[Mapping[str, Any]]], None]


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

    def on_conflict(self, compare: str) -> str:
        """``ON CONFLICT (key) DO UPDATE`` every other column, unless ``raw`` is unchanged
        (``compare``: the dialect's null-safe "differs")."""
        key = [c.name for c in audit_logs.primary_key]
        updated = ", ".join(
            f"{quoted} = excluded.{quoted}"
            for name, quoted in self.columns.items()
            if name not in key
        )
        raw = self[audit_logs.c.raw]
        return (
            f"ON CONFLICT ({self.joined(key)}) DO UPDATE SET {updated} "
            f"WHERE {self.table}.{raw} {compare} excluded.{raw}"
        )


@functools.lru_cache(maxsize=64)
def _sqlite_select_existing(names: _Names, ids: int) -> str:
    account, record_id = names[audit_logs.c.account], names[audit_logs.c.id]
    return (
        f"SELECT {record_id}, {names[audit_logs.c.raw]} FROM {names.table} WHERE {account} = ? "
        f"AND {record_id} IN ({', '.join(['?'] * ids)}) AND {record_id} BETWEEN ? AND ?"
    )


def _sqlite_existing(
    names: _Names, conn: Connection, account: str, ids: list[Any]
) -> Iterator[tuple[Any, Any]]:
    """MySQL's ``existing`` query (``_mysql_rows``) straight to the driver: SQLAlchemy's
    expanding ``IN`` cost more than the query itself."""
    params = (account, *ids, ids[0], ids[-1])
    for record_id, raw in conn.exec_driver_sql(_sqlite_select_existing(names, len(ids)), params):
        yield record_id, json.loads(raw)  # what the JSON type would return


def _columns_only(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return {k: v for k, v in row.items() if k != RAW_JSON} if RAW_JSON in row else row


def _sqlite_time(value: datetime, fsp: int) -> str:
    """SQLAlchemy's SQLite DATETIME text for what the driver is given (naive UTC)."""
    return db_time(value, "sqlite", fsp).isoformat(" ", "microseconds")


def _iso_time(value: datetime, fsp: int) -> str:
    return db_time(value, "postgresql", fsp).isoformat()


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


@functools.cache
def _sqlite_upsert(names: _Names, rows: int) -> str:
    """The upsert of ``rows`` rows in one statement: one step of SQLite for all of them,
    so the GIL is released once per statement rather than once per row."""
    one = f"({', '.join('?' for _ in _COLUMNS)})"
    return (
        f"INSERT INTO {names.table} ({names.joined(_COLUMNS)}) VALUES {', '.join([one] * rows)} "
        + names.on_conflict("IS NOT")
    )


def _sqlite_rows_per_statement(driver_connection: Any) -> int:
    limit = int(driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return max(1, min(_SQLITE_ROWS_PER_STATEMENT, limit // len(_COLUMNS)))


def _sqlite_rows(names: _Names, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    created, synced = _COLUMNS.index("created_at"), _COLUMNS.index("synced_at")
    params: list[Any] = []
    width = len(_COLUMNS)
    times = _TimeTexts(_sqlite_time)
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
    if whole < len(params):
        rest = tuple(params[whole:])
        conn.exec_driver_sql(_sqlite_upsert(names, len(rest) // width), rest)


_PG_JSON_COLUMNS = [name for name in _COLUMNS if name != audit_logs.c.raw.name]
_PG_VALUES = operator.itemgetter(*_PG_JSON_COLUMNS)
_PG_CREATED = _PG_JSON_COLUMNS.index("created_at")
_PG_SYNCED = _PG_JSON_COLUMNS.index("synced_at")


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
        + names.on_conflict("IS DISTINCT FROM")
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
    values: list[list[Any]] = []
    raws: list[str] = []
    times = _TimeTexts(_iso_time)
    for row in rows.values():
        columns = list(_PG_VALUES(row))
        columns[_PG_CREATED] = times.created(columns[_PG_CREATED])
        columns[_PG_SYNCED] = times.synced(columns[_PG_SYNCED])
        values.append(columns)
        raws.append(raw_text(row))
    # orjson, as for raw: rows hold only text, integers and nulls by now (4x the json module)
    batch = (orjson.dumps(values).decode(), "[" + ",".join(raws) + "]")
    inserted, written = conn.exec_driver_sql(_pg_json_upsert(names), batch).one()
    return inserted, written - inserted


def row_upsert(dialect: Dialect) -> RowUpsert:
    """The dialect's row upsert: PostgreSQL's counts what it wrote; SQLite's (straight to
    the driver) and MySQL's (SQLAlchemy Core) read the batch's existing rows first."""
    if dialect.name == "postgresql":
        return functools.partial(_postgresql_upsert, _Names.of(dialect))
    if dialect.name == "sqlite":
        names = _Names.of(dialect)
        read = functools.partial(_sqlite_existing, names)
        return _changed_rows_upsert(read, functools.partial(_sqlite_rows, names))
    if dialect.name in MYSQL_DIALECTS:
        return _changed_rows_upsert(*_mysql_rows())
    raise ValueError(f"unsupported dialect {dialect.name!r}")
