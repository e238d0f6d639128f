"""The per-dialect row upserts: a batch's rows written with one dialect-native upsert keyed
on ``(account, id)`` that refuses to rewrite an unchanged row, saying how many were
inserted and how many updated.

PostgreSQL's upsert counts what it wrote itself; on SQLite and MySQL the batch's existing
``(id, raw)`` pairs are read first, in the same transaction, and only new or changed rows
are sent: one reader and one writer a dialect, joined here.

"Changed" is exact on every database: the stored and the new record are compared as
canonical JSON text (``etl.records.canonical``), never as Python values, where ``1 == True``
and ``1 == 1.0``: a field going from ``1`` to ``true`` or ``1.0`` is a change, a new key
order is not. PostgreSQL compares ``raw::text``, which follows the same rules.

SQLite's and PostgreSQL's go straight to the driver (``etl.storage.upserts.driver``);
MySQL's through SQLAlchemy Core, here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from etl.common.jsonbody import decode_json
from etl.records.audit import RAW_JSON
from etl.records.canonical import canonical_json
from etl.storage.limits import RowUpsert, byte_batches, max_packet, raw_text
from etl.storage.schema.coltypes import MYSQL_DIALECTS, dialect_insert
from etl.storage.schema.logs import audit_logs
from etl.storage.upserts.driver import (
    ExistingReader,
    RowWriter,
    StoredCheck,
    postgresql_unchanged,
    postgresql_upsert,
    sqlite_rows,
)

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


def changed(stored: str | bytes, row: Mapping[str, Any]) -> bool:
    """Whether ``row``'s record differs from the ``stored`` raw JSON text: the same text
    is the same record; otherwise their canonical texts decide (types, not Python's
    equality: ``1`` differs from ``true`` and from ``1.0``; key order does not count)."""
    new = raw_text(row)
    if stored == new:
        return False
    return canonical_json(decode_json(stored)) != canonical_json(row["raw"])


def _new_or_changed(
    read: ExistingReader, conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], int]:
    """The rows of a batch that are new or changed (``changed``), by ``read``'s existing
    ``(id, raw text)`` pairs, and how many of them are new."""
    existing: dict[Any, Any] = {}
    for chunk in _id_ranges(sorted(rows), _ID_CHUNK):  # each chunk one narrow range
        for record_id, raw in read(conn, account, chunk):
            existing[record_id] = raw
    written: list[Mapping[str, Any]] = []
    inserted = 0
    for record_id, row in rows.items():
        old = existing.get(record_id, _MISSING)
        if old is _MISSING:
            inserted += 1
            written.append(row)
        elif changed(old, row):
            written.append(row)
    return written, inserted


def _changed_rows_upsert(read: ExistingReader, write: RowWriter) -> RowUpsert:
    """An upsert that first reads the batch's existing ``(id, raw text)`` pairs with
    ``read``, then sends only the new or changed rows to ``write``; it says (inserted,
    updated)."""

    def upsert(
        conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
    ) -> tuple[int, int]:
        written, inserted = _new_or_changed(read, conn, account, rows)
        if written:
            write(conn, written)
        return inserted, len(written) - inserted

    return upsert


def _unchanged_by_reading(read: ExistingReader) -> StoredCheck:
    """Whether every row of a batch is stored with the same record: the upsert with the
    same ``read`` would write none of it."""

    def unchanged(conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]) -> bool:
        return not _new_or_changed(read, conn, account, rows)[0]

    return unchanged


def _mysql_rows() -> tuple[ExistingReader, RowWriter]:
    """MySQL's reader and writer of rows, through SQLAlchemy Core (no fast path there)."""
    # raw as the stored text (the JSON type would decode it): ``changed`` compares texts.
    raw = sa.type_coerce(audit_logs.c.raw, sa.Text)
    existing = sa.select(audit_logs.c.id, raw).where(
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
            conn.execute(upsert, [with_raw_text(row) for row in batch])

    return read, write


def _mysql_rows_upsert() -> sa.Executable:
    """INSERT ... or update every column but the key: the one upsert that goes through
    SQLAlchemy Core (SQLite and PostgreSQL have fast paths). Only rows that ``changed``
    found new or changed are sent, so an existing one is always rewritten: MySQL's own
    ``<=>`` on its JSON type would call ``1`` and ``1.0`` equal."""
    table = audit_logs
    key = {c.name for c in table.primary_key}
    my = dialect_insert("mysql", table).values(raw=raw_as_text("mysql"))
    assignments = [(c.name, my.inserted[c.name]) for c in table.columns if c.name not in key]
    upsert: sa.Executable = my.on_duplicate_key_update(assignments)
    return upsert


def raw_as_text(dialect: str) -> sa.ColumnElement[Any]:
    """``raw``'s value in a Core INSERT: the row's JSON text (``raw_text``, the record's
    canonical text for a record of plain values) bound as it is, under ``RAW_JSON``
    (``with_raw_text``). The JSON type would serialize the record again, keys unsorted:
    MariaDB would then keep a text that is not the one hashed, which verify must parse."""
    bound = sa.bindparam(RAW_JSON, type_=sa.Text)
    return sa.cast(bound, audit_logs.c.raw.type) if dialect == "postgresql" else bound


def with_raw_text(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """``row``'s parameters for a statement whose ``raw`` is ``raw_as_text``."""
    sent = {k: v for k, v in row.items() if k != "raw"}
    sent[RAW_JSON] = raw_text(row)
    return sent


def stored_check(dialect: Dialect) -> StoredCheck:
    """The dialect's check that a batch is stored already as it is (``Store.unchanged``):
    the same comparison as its ``row_upsert``, reading only."""
    if dialect.name == "postgresql":
        return postgresql_unchanged(dialect)
    if dialect.name == "sqlite":
        return _unchanged_by_reading(sqlite_rows(dialect)[0])
    if dialect.name in MYSQL_DIALECTS:
        return _unchanged_by_reading(_mysql_rows()[0])
    raise ValueError(f"unsupported dialect {dialect.name!r}")


def row_upsert(dialect: Dialect) -> RowUpsert:
    """The dialect's row upsert: PostgreSQL's counts what it wrote; SQLite's (straight to
    the driver) and MySQL's (SQLAlchemy Core) read the batch's existing rows first."""
    if dialect.name == "postgresql":
        return postgresql_upsert(dialect)
    if dialect.name == "sqlite":
        return _changed_rows_upsert(*sqlite_rows(dialect))
    if dialect.name in MYSQL_DIALECTS:
        return _changed_rows_upsert(*_mysql_rows())
    raise ValueError(f"unsupported dialect {dialect.name!r}")
