"""Ledger entries into each database, straight to the driver (``insert_entries``).

SQLAlchemy's per-row parameter processing cost more than the hashing, so each database is
given the entries in the form it reads fastest: PostgreSQL by binary ``COPY`` (no hex or
time text to write here and parse there), MariaDB/MySQL as multi-row INSERTs of literals
made here (PyMySQL escapes each value in Python), SQLite by multi-row VALUES (one step of
SQLite for up to 512 entries). An entry is the tuple ``ENTRY_COLUMNS`` names.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Dialect

from etl.storage.limits import max_packet
from etl.storage.schema import ledger

# The columns an entry is inserted with (``note`` only by the adoption, in revision 0008).
ENTRY_COLUMNS = ("account", "entry", "kind", "record_id", "stored_seq", "record_hash",
                 "entry_hash", "written_at")  # fmt: skip
# Entries per INSERT statement: at most this many rows of 8 values, in shapes of powers
# of two (a few statements a run, each prepared once), within SQLite's and PostgreSQL's
# bound-parameter limits.
_ROWS_PER_STATEMENT = 512
# A statement of literals is not a format string: PyMySQL must not look for %s in it.
_NO_PARAMETERS = {"no_parameters": True}
# PostgreSQL's binary COPY: the file header and trailer, and per field its length then
# its bytes (-1: NULL); bigint as 8 bytes, bytea as they are, timestamptz as microseconds
# since 2000-01-01 UTC, text as UTF-8 (the client encoding psycopg sets).
_COPY_HEADER = b"PGCOPY\n\xff\r\n\0" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_COPY_NULL = b"\xff\xff\xff\xff"
_FIELDS = struct.pack(">h", len(ENTRY_COLUMNS))
_INT8 = struct.Struct(">iq")
_LENGTH = struct.Struct(">i")
_DIGESTS = struct.Struct(">i32si32s")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def insert_entries(conn: Connection, values: list[tuple[Any, ...]]) -> None:
    """Insert ledger entries (tuples of ``ENTRY_COLUMNS``) in the connection's transaction."""
    if not values:
        return
    dialect = conn.dialect
    driver = conn.connection.driver_connection
    assert driver is not None
    if dialect.name == "postgresql":
        with driver.cursor().copy(_copy_sql(dialect)) as copy:
            copy.write(copy_binary(values))
    elif dialect.name != "sqlite":
        packet = max_packet(conn)
        assert packet is not None
        for statement in mysql_inserts(dialect, driver.escape, values, packet // 2):
            conn.exec_driver_sql(statement, execution_options=_NO_PARAMETERS)
    else:
        # fewer where an older SQLite binds fewer than 32,766 parameters (999 before 3.32)
        limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        most = min(_ROWS_PER_STATEMENT, limit // len(ENTRY_COLUMNS))
        at = 0
        while at < len(values):
            size = min(most, 1 << ((len(values) - at).bit_length() - 1))
            flat = tuple(itertools.chain.from_iterable(values[at : at + size]))
            conn.exec_driver_sql(_insert_sql(dialect, size), flat)
            at += size


def copy_binary(values: list[tuple[Any, ...]]) -> bytes:
    """Entries as PostgreSQL's binary COPY data, header and trailer included; what is the
    same in every entry of a call (account, kind, time) encoded once."""
    fields: dict[Any, bytes] = {}

    def field(value: Any) -> bytes:
        data = fields.get(value)
        if data is None:
            if isinstance(value, datetime):
                data = _INT8.pack(8, (value - _PG_EPOCH) // _MICROSECOND)
            else:
                text = str(value).encode()
                data = _LENGTH.pack(len(text)) + text
            fields[value] = data
        return data

    out = [_COPY_HEADER]
    append, int8, digests, length = out.append, _INT8.pack, _DIGESTS.pack, _LENGTH.pack
    for account, entry, kind, record_id, seq, record, head, at in values:
        if record_id is None:
            rid = _COPY_NULL
        else:
            text = record_id.encode()
            rid = length(len(text)) + text
        number = _COPY_NULL if seq is None else int8(8, seq)
        fixed = (_FIELDS, field(account), int8(8, entry), field(kind), rid, number)
        append(b"".join((*fixed, digests(32, record, 32, head), field(at))))
    append(_COPY_TRAILER)
    return b"".join(out)


def mysql_inserts(
    dialect: Dialect, escape: Callable[[Any], str], values: list[tuple[Any, ...]], budget: int
) -> Iterator[str]:
    """Entries as multi-row INSERTs of SQL literals, each statement within ``budget``
    bytes (half the server's packet): digests as hex literals, anything else as the
    driver's ``escape`` writes it, each distinct value once (account, kind and time are
    the same in a call)."""
    head = _insert_sql(dialect, 0)
    quoted: dict[Any, str] = {}

    def literal(value: Any) -> str:
        text = quoted.get(value)
        if text is None:
            text = quoted[value] = escape(value)
        return text

    rows: list[str] = []
    size = len(head)
    for account, entry, kind, record_id, seq, record, digest, at in values:
        if record_id is None:
            rid = "NULL"
        elif record_id.isascii() and record_id.isdigit():  # nothing to escape
            rid = f"'{record_id}'"
        else:
            rid = literal(record_id)
        row = (
            f"({literal(account)},{entry},{literal(kind)},{rid},"
            f"{'NULL' if seq is None else seq},x'{record.hex()}',x'{digest.hex()}',{literal(at)})"
        )
        if rows and size + len(row) > budget:
            yield head + ",".join(rows)
            rows, size = [], len(head)
        rows.append(row)
        size += len(row) + 1
    if rows:
        yield head + ",".join(rows)


@functools.cache
def _copy_sql(dialect: Dialect) -> str:
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(name) for name in ENTRY_COLUMNS)
    return f"COPY {quote.format_table(ledger)} ({columns}) FROM STDIN (FORMAT BINARY)"


@functools.cache
def _insert_sql(dialect: Dialect, rows: int) -> str:
    quote = dialect.identifier_preparer
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(quote.quote(name) for name in ENTRY_COLUMNS)
    one = "(" + ", ".join([marker] * len(ENTRY_COLUMNS)) + ")"
    values = ", ".join([one] * rows)  # none: the head of a statement of literals
    return f"INSERT INTO {quote.format_table(ledger)} ({columns}) VALUES {values}"
