"""What each database can hold, so that one record that does not fit never stops the log.

Three guards, each turning a row that cannot be stored into a ``Reject`` while the rest
of its batch commits:

- Column lengths (``parse_record``, every database alike): a text value longer than its
  bounded column (``schema.column_lengths``) rejects the record.
- MySQL/MariaDB's packet (``packet_rejects`` and ``byte_batches``): one statement must fit
  in the server's ``max_allowed_packet`` (read once per connection). Rows are sent in
  batches of at most half of it; a row that alone comes near it is rejected, and a
  reject's ``raw`` is cut to fit, saying so in its reason.
- Any other data error (``upsert_isolating``): the batch's upsert runs in a savepoint; if
  the database refuses a value, the batch is halved until the offending rows are found,
  which become rejects with the database's one-line reason. A refusal is a data error
  (``refused_data``) whatever class the driver gives it: MariaDB's failed JSON check
  (error 4025, ``CONSTRAINT ... raw failed``) and MySQL's JSON errors come as
  OperationalError, PostgreSQL's "too deep" (SQLSTATE 54001) too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.records.audit import RAW_CANONICAL, RAW_JSON, Reject
from etl.storage.engine import json_text, reason
from etl.storage.schema.coltypes import MYSQL_DIALECTS

# Room for the statement's SQL (column lists, ON DUPLICATE KEY UPDATE ...) and the
# protocol's headers, beyond the rows' values.
STATEMENT_ROOM = 64 * 1024
# Bytes a value of another type takes as an SQL literal, at most (a datetime's
# '2024-05-01 12:00:00.000000', a BIGINT's 20 digits).
_OTHER_LITERAL = 32
# What PyMySQL (and MySQL's own escape_string) writes as two bytes.
_ESCAPED = ("\\", "'", '"', "\n", "\r", "\x00", "\x1a")
_PACKET_KEY = "etl_max_allowed_packet"
# Rows whose size bound is below this are not measured exactly.
_EXACT_ABOVE = 64 * 1024

# MySQL/MariaDB errors that refuse a value, not the connection: a CHECK constraint failed
# (MariaDB's JSON_VALID on its JSON columns), invalid JSON text, a JSON document too deep.
_MYSQL_DATA_ERRORS = frozenset({3140, 3141, 3146, 3157, 4025})
# PostgreSQL: statement too complex (a value nested past the server's stack depth).
_POSTGRESQL_DATA_ERRORS = frozenset({"54001"})

RowUpsert = Callable[[Connection, str, Mapping[Any, Mapping[str, Any]]], tuple[int, int]]


@dataclass
class Upserted:
    """What an upsert wrote, and the rows the database refused."""

    inserted: int = 0
    updated: int = 0
    rejects: list[Reject] = field(default_factory=list)


def max_packet(conn: Connection) -> int | None:
    """MySQL/MariaDB's ``max_allowed_packet``, read once per connection; None elsewhere."""
    if conn.dialect.name not in MYSQL_DIALECTS:
        return None
    info = conn.connection.info
    if _PACKET_KEY not in info:
        info[_PACKET_KEY] = int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar_one())
    return int(info[_PACKET_KEY])


def literal_size(value: object) -> int:
    """The bytes ``value`` takes as an escaped SQL literal, quotes included (an upper bound
    for anything but text)."""
    if isinstance(value, str):
        size = len(value) if value.isascii() else len(value.encode())
        return size + 2 + sum(value.count(c) for c in _ESCAPED)
    return _OTHER_LITERAL


def row_size(row: Mapping[str, Any]) -> int:
    """The bytes a row's values take in an INSERT, ``raw`` as the JSON text stored: exact
    for a large row, a cheap upper bound for a small one (one count costs ~50 us a row)."""
    if RAW_JSON in row:
        # Every text column is a part of raw's text, and a character takes at most 4 bytes,
        # 2 when escaped: raw and the columns together take at most 16 bytes a character.
        bound = 16 * len(row[RAW_JSON]) + len(row) * (_OTHER_LITERAL + 2)
        if bound <= _EXACT_ABOVE:
            return bound
    size = 0
    for name, value in row.items():
        if name in (RAW_JSON, RAW_CANONICAL):  # not columns
            continue
        if name == "raw" and not isinstance(value, str):  # a reject's raw is text already
            value = raw_text(row)
        size += literal_size(value) + 2
    return size


def raw_text(row: Mapping[str, Any]) -> str:
    """``raw`` as the JSON text to store (non-ASCII as UTF-8, like ``parse_record``'s);
    made by ``parse_record`` already, unless it altered the record."""
    text = row.get(RAW_JSON)
    return text if isinstance(text, str) else json_text(row["raw"])


def packet_rejects(rows: dict[Any, Mapping[str, Any]], packet: int | None) -> list[Reject]:
    """Take out of ``rows`` (by id) those whose INSERT alone would not fit in ``packet``."""
    if packet is None:
        return []
    room = packet - STATEMENT_ROOM
    rejects = []
    for record_id, row in list(rows.items()):
        size = row_size(row)
        if size > room:
            del rows[record_id]
            why = (
                f"the record takes {size} bytes as SQL, more than the server takes in one "
                f"statement (max_allowed_packet {packet})"
            )
            rejects.append(Reject(str(record_id), why, _reject_text(row)))
    return rejects


def byte_batches(
    rows: Sequence[Mapping[str, Any]], budget: int
) -> Iterator[Sequence[Mapping[str, Any]]]:
    """``rows`` in consecutive batches of at most ``budget`` bytes of values each (a row
    larger than that alone)."""
    start, used = 0, 0
    for i, row in enumerate(rows):
        size = row_size(row)
        if i > start and used + size > budget:
            yield rows[start:i]
            start, used = i, 0
        used += size
    if start < len(rows):
        yield rows[start:]


def storable_reject(reject: Reject, packet: int | None) -> Reject:
    """``reject`` with its ``raw`` cut to what one statement can carry, saying so."""
    room = None if packet is None else packet - STATEMENT_ROOM - literal_size(reject.reason) - 4096
    if room is None or literal_size(reject.raw) <= room:
        return reject
    size = len(reject.raw.encode())
    cut = reject.raw[: max(room // 2, 0)]  # an escape doubles a byte at most; raw is ASCII
    why = f"{reject.reason}; raw truncated to its first {len(cut)} of {size} bytes"
    return Reject(reject.record_id, why, cut)


def upsert_isolating(
    conn: Connection, upsert: RowUpsert, account: str, rows: Mapping[Any, Mapping[str, Any]]
) -> Upserted:
    """``upsert`` in a savepoint; if the database refuses a value (a data error, not a lost
    connection or a lock timeout, which still fail the transaction), the rows are halved
    until those it refuses are found and made rejects, and the others written."""
    if not rows:
        return Upserted()
    try:
        with savepoint(conn):
            inserted, updated = upsert(conn, account, rows)
        return Upserted(inserted, updated)
    except sa.exc.DBAPIError as exc:
        if not refused_data(exc):
            raise
        if len(rows) == 1:
            ((record_id, row),) = rows.items()
            why = f"the database refused it: {reason(exc, conn.engine.url)}"
            return Upserted(rejects=[Reject(str(record_id), why, _reject_text(row))])
    items = list(rows.items())
    middle = len(items) // 2
    first = upsert_isolating(conn, upsert, account, dict(items[:middle]))
    second = upsert_isolating(conn, upsert, account, dict(items[middle:]))
    return Upserted(
        first.inserted + second.inserted,
        first.updated + second.updated,
        first.rejects + second.rejects,
    )


# One name serves: the savepoints of a batch's halves come one after another, never nested.
_SAVEPOINT = "etl_upsert"


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint around a block: released when it ends, rolled back to (and released)
    when it raises, which the error then leaves. ``conn.begin_nested()`` does the same,
    but compiles its SAVEPOINT and RELEASE statements anew each time (they have no cache
    key): two compilations a batch, the largest of a batch's fixed costs after the commit."""
    conn.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")
    try:
        yield
    except BaseException:
        # A rollback that fails (a lost connection) raises its own error, chained to this.
        conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        conn.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        raise
    conn.exec_driver_sql(f"RELEASE SAVEPOINT {_SAVEPOINT}")


def refused_data(exc: sa.exc.DBAPIError) -> bool:
    """Whether the database refused a value (a row of it becomes a reject), rather than
    failing the transaction (a lost connection, a lock timeout, a cancelled statement)."""
    if exc.connection_invalidated:
        return False
    if isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError)):
        return True
    orig = exc.orig
    code = orig.args[0] if orig is not None and orig.args else None
    if isinstance(code, int) and code in _MYSQL_DATA_ERRORS:
        return True
    return getattr(orig, "sqlstate", None) in _POSTGRESQL_DATA_ERRORS


def _reject_text(row: Mapping[str, Any]) -> str:
    """A row's record as a reject keeps it: ASCII-escaped JSON, as ``parse_record``'s."""
    return json.dumps(row["raw"], sort_keys=True, default=_time_text)


def _time_text(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
