"""Ledger entries into each database, straight to the driver (``insert_entries``).

SQLAlchemy's per-row parameter processing cost more than the hashing, so each database is
given the entries in the form it reads fastest: PostgreSQL by ``COPY`` in binary format
packed here, one ``struct`` call an entry (against the text format, 100,000 entries cost
its server 0.19 s of CPU rather than 0.23 s, as it parses no timestamp and no hex, and the
job 0.42 us rather than 0.62 us an entry: no ``hex()`` and no escaping;
docs/performance/HISTORY.md),
MariaDB/MySQL as multi-row INSERTs of literals made here (PyMySQL escapes each value in
Python), SQLite by multi-row VALUES (one step of SQLite for up to 512 entries). An entry is
the tuple ``ENTRY_COLUMNS`` names.
"""

from __future__ import annotations

import functools
import itertools
import struct
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection, Dialect

from etl.storage.limits import max_packet
from etl.storage.schema.integrity import ledger

# The columns an entry is inserted with (``note`` only by the adoption, in revision 0008).
ENTRY_COLUMNS = ("account", "entry", "kind", "record_id", "stored_seq", "record_hash",
                 "entry_hash", "written_at")  # fmt: skip
# Entries per INSERT statement: at most this many rows of 8 values, in shapes of powers
# of two (a few statements a run, each prepared once), within SQLite's and PostgreSQL's
# bound-parameter limits.
_ROWS_PER_STATEMENT = 512
# A statement of literals is not a format string: PyMySQL must not look for %s in it.
_NO_PARAMETERS = {"no_parameters": True}
# Binary COPY's framing (PostgreSQL's "COPY" page): signature, flags and header extension
# before the tuples, -1 after them; a field is its length (-1: NULL) and its bytes; a
# timestamptz, microseconds since 2000-01-01 UTC as a signed 64-bit integer.
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\0" + bytes(8)
_COPY_TRAILER = b"\xff\xff"
_COPY_NULL = struct.pack(">i", -1)
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def insert_entries(conn: Connection, values: list[Any]) -> None:
    """Insert ledger entries in the connection's transaction: tuples of ``ENTRY_COLUMNS``,
    or on PostgreSQL their binary COPY rows as ``CopyRows`` packs them."""
    if not values:
        return
    dialect = conn.dialect
    driver = conn.connection.driver_connection
    assert driver is not None
    if dialect.name == "postgresql":
        data = b"".join((_COPY_SIGNATURE, *values, _COPY_TRAILER))
        with driver.cursor().copy(_copy_sql(dialect)) as copy:
            copy.write(data)
    elif dialect.name != "sqlite":
        packet = max_packet(conn)
        assert packet is not None
        for statement in mysql_inserts(dialect, driver.escape, values, packet // 2):
            conn.exec_driver_sql(statement, execution_options=_NO_PARAMETERS)
    else:
        import sqlite3  # loaded already on SQLite; PostgreSQL and MariaDB runs never need it

        # fewer where an older SQLite binds fewer than 32,766 parameters (999 before 3.32)
        limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        most = min(_ROWS_PER_STATEMENT, limit // len(ENTRY_COLUMNS))
        at = 0
        while at < len(values):
            size = min(most, 1 << ((len(values) - at).bit_length() - 1))
            flat = tuple(itertools.chain.from_iterable(values[at : at + size]))
            conn.exec_driver_sql(_insert_sql(dialect, size), flat)
            at += size


class CopyRows:
    """Entries of one account, kind and time as binary COPY rows, one ``bytes`` each:
    an entry with a record id and a number (every row's) packed by one ``struct`` a
    length of record id; account, kind and time encoded once."""

    __slots__ = ("_at", "_fixed", "_kind", "_lead", "_packs")

    def __init__(self, account: str, kind: str, at: datetime) -> None:
        self._fixed = self._lead, self._kind, self._at = _fixed_fields(account, kind, at)
        self._packs: dict[int, Callable[..., bytes]] = {}

    def row(self, entry: int, rid: bytes, seq: int, record: bytes, digest: bytes) -> bytes:
        """An entry with a record id (its UTF-8) and a number."""
        size = len(rid)
        pack = self._packs.get(size)
        if pack is None:
            shape = f">{len(self._lead)}sq{len(self._kind)}si{size}siqi32si32s12s"
            pack = self._packs[size] = struct.Struct(shape).pack
        return pack(
            self._lead, entry, self._kind, size, rid, 8, seq, 32, record, 32, digest, self._at
        )

    def any_row(
        self, entry: int, record_id: str | None, seq: int | None, record: bytes, digest: bytes
    ) -> bytes:
        """An entry of any shape (a NULL record id or number: a reject's)."""
        return _entry_fields(self._fixed, entry, record_id, seq, record, digest)


def _fixed_fields(account: str, kind: str, at: datetime) -> tuple[bytes, bytes, bytes]:
    """The field count and account field, up to the entry number's length; the kind's
    field; the time's field."""
    name, letter = account.encode(), kind.encode()
    lead = struct.pack(">hi", len(ENTRY_COLUMNS), len(name)) + name + struct.pack(">i", 8)
    microseconds = (at - _PG_EPOCH) // _MICROSECOND
    return lead, _field(letter), struct.pack(">iq", 8, microseconds)


def _field(value: bytes | None) -> bytes:
    return _COPY_NULL if value is None else struct.pack(">i", len(value)) + value


def _entry_fields(
    same: tuple[bytes, bytes, bytes],
    entry: int,
    record_id: str | None,
    seq: int | None,
    record: bytes,
    digest: bytes,
) -> bytes:
    """One entry's fields, any shape (a NULL record id or number)."""
    lead, kind_field, at_field = same
    rid = _field(None if record_id is None else record_id.encode())
    number = _field(None if seq is None else struct.pack(">q", seq))
    hashes = _field(record) + _field(digest)
    return lead + struct.pack(">q", entry) + kind_field + rid + number + hashes + at_field


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
