"""Ledger entries into each database, straight to the driver (``insert_entries``).

SQLAlchemy's per-row parameter processing cost more than the hashing, so each database is
given the entries in the form it reads fastest: PostgreSQL by ``COPY`` in text format
written as one block (binary ``COPY`` cost PostgreSQL's server more: 0.38 s against 0.30 s
of CPU for 100,000 entries), MariaDB/MySQL as multi-row INSERTs of literals
made here (PyMySQL escapes each value in Python), SQLite by multi-row VALUES (one step of
SQLite for up to 512 entries). An entry is the tuple ``ENTRY_COLUMNS`` names.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from datetime import datetime
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
# What COPY's text format escapes in a field (NULL is \\N, so a backslash is doubled).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def insert_entries(conn: Connection, values: list[tuple[Any, ...]]) -> None:
    """Insert ledger entries (tuples of ``ENTRY_COLUMNS``) in the connection's transaction."""
    if not values:
        return
    dialect = conn.dialect
    driver = conn.connection.driver_connection
    assert driver is not None
    if dialect.name == "postgresql":
        with driver.cursor().copy(_copy_sql(dialect)) as copy:
            copy.write(copy_text(values))
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


def copy_text(values: list[tuple[Any, ...]]) -> str:
    """Entries as COPY's text format: one line each, NULL as ``\\N``, bytea as ``\\x`` hex
    (its backslash doubled), the time in ISO 8601 with its offset; each distinct text
    escaped once (account, kind and time are the same in a call)."""
    fields: dict[Any, str] = {}

    def field(value: Any) -> str:
        text = fields.get(value)
        if text is None:
            plain = value.isoformat() if isinstance(value, datetime) else str(value)
            text = fields[value] = plain.translate(_COPY_ESCAPES)
        return text

    lines = []
    for account, entry, kind, record_id, seq, record, head, at in values:
        if record_id is None:
            rid = "\\N"
        else:  # a record id: digits, nearly always
            rid = record_id if record_id.isalnum() else record_id.translate(_COPY_ESCAPES)
        number = "\\N" if seq is None else seq
        lines.append(
            f"{field(account)}\t{entry}\t{field(kind)}\t{rid}\t{number}\t"
            f"\\\\x{record.hex()}\t\\\\x{head.hex()}\t{field(at)}\n"
        )
    return "".join(lines)


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
    return f"COPY {quote.format_table(ledger)} ({columns}) FROM STDIN"


@functools.cache
def _insert_sql(dialect: Dialect, rows: int) -> str:
    quote = dialect.identifier_preparer
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(quote.quote(name) for name in ENTRY_COLUMNS)
    one = "(" + ", ".join([marker] * len(ENTRY_COLUMNS)) + ")"
    values = ", ".join([one] * rows)  # none: the head of a statement of literals
    return f"INSERT INTO {quote.format_table(ledger)} ({columns}) VALUES {values}"
