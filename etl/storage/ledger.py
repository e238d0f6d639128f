"""The ledger's writer: each stored version and reject chained, in the transaction that
stores it (``BatchTransaction``), and the account's head moved once, before the commit.

The hashes are etl.records.chain's. A transaction that appends first locks the account's
head row (``SELECT ... FOR UPDATE``; SQLite's writer holds the database): a second writer
of the account waits for it and chains onto its last entry, so entries are numbered
1, 2, 3... in commit order with no fork. Nothing here updates or deletes an entry.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import sqlite3
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from etl.records import chain
from etl.records.audit import RAW_JSON
from etl.storage.limits import max_packet
from etl.storage.schema import db_time, ledger, ledger_head, sqlite_time
from etl.storage.sequence import SEQ_COLUMN

_sha256 = hashlib.sha256
_PLAIN = frozenset({str, int, bool, type(None)})
_FIXED = struct.Struct(">Q1sqH")  # as etl.records.chain's: number, kind, seq, id's length
_ROW_KIND = chain.ROW.encode()
# Entries per INSERT statement: at most this many rows of 8 values, in shapes of powers
# of two (a few statements a run, each prepared once), within SQLite's and PostgreSQL's
# bound-parameter limits.
_ROWS_PER_STATEMENT = 512
# What COPY's text format escapes in a field (NULL is \\N, so a backslash is doubled).
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
# A statement of literals is not a format string: PyMySQL must not look for %s in it.
_NO_PARAMETERS = {"no_parameters": True}
_HEAD = (
    sa.select(ledger_head.c.entries, ledger_head.c.head)
    .where(ledger_head.c.account == sa.bindparam("account"))
    .with_for_update()
)
# Built once, as every transaction moves the head (a statement built per call cost more
# than the query).
_MOVE_HEAD = (
    sa.update(ledger_head)
    .where(ledger_head.c.account == sa.bindparam("head_account"))
    .values(entries=sa.bindparam("new_entries"), head=sa.bindparam("new_head"))
)
_NEW_HEAD = sa.insert(ledger_head)
# The columns an entry is inserted with (``note`` only by the adoption, in revision 0008).
_COLUMNS = ("account", "entry", "kind", "record_id", "stored_seq", "record_hash", "entry_hash",
            "written_at")  # fmt: skip


@functools.cache
def _written(table: sa.Table) -> sa.Select[tuple[Any]]:
    return sa.select(table.c.stored_seq).where(
        table.c.account == sa.bindparam("account"),
        table.c.stored_seq.between(sa.bindparam("lo"), sa.bindparam("hi")),
    )


def written_rows(
    conn: Connection,
    table: sa.Table,
    account: str,
    rows: Mapping[Any, Mapping[str, Any]],
    written: int,
) -> list[Mapping[str, Any]]:
    """Those of a batch's numbered ``rows`` the upsert wrote into ``table`` (``written`` of
    them): all of them, usually; else those whose number is in the table (an unchanged
    record keeps its old number, a refused one has none)."""
    numbered = list(rows.values())
    if written == len(numbered) or not numbered:
        return numbered
    seqs = [row[SEQ_COLUMN] for row in numbered]
    params = {"account": account, "lo": min(seqs), "hi": max(seqs)}
    stored = set(conn.execute(_written(table), params).scalars())
    return [row for row in numbered if row[SEQ_COLUMN] in stored]


class LedgerWriter:
    """One transaction's appends to one account's chain."""

    def __init__(self, conn: Connection, account: str, now: Callable[[], datetime]) -> None:
        self._conn = conn
        self._account = account
        self._now = now
        self._entries: int | None = None  # None: the head not read (nothing appended) yet
        self._head = b""
        self._known = False  # whether the account has a head row already

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Chain written rows (with their ``stored_seq``), in store order.

        ``chain.entry_hash``'s bytes, written out in this loop: a call and a hash object
        less per row (the hashing was a third of the ledger's cost); verify recomputes
        them with ``chain.entry_hash``."""
        rows = list(rows)
        if not rows:
            return
        at = self._written_at()
        if self._entries is None:
            self._open()
        assert self._entries is not None
        account, number, head = self._account, self._entries, self._head
        tag, pack, kind, plain = chain.ENTRY_TAG, _FIXED.pack, chain.ROW, _PLAIN.issuperset
        values = []
        for row in rows:
            # record_digest, inlined: the call was a tenth of the loop
            raw, text = row["raw"], row.get(RAW_JSON)
            if type(text) is str and type(raw) is dict and plain(map(type, raw.values())):
                record = _sha256(text.encode()).digest()
            else:
                record = chain.record_hash(raw)
            record_id, seq = str(row["id"]), row[SEQ_COLUMN]
            rid = record_id.encode()
            number += 1
            head = _sha256(
                b"".join((tag, head, pack(number, _ROW_KIND, seq or 0, len(rid)), rid, record))
            ).digest()
            values.append((account, number, kind, record_id, seq, record, head, at))
        self._entries, self._head = number, head
        self._insert(values)

    def rejects(self, rejects: Iterable[Mapping[str, Any]]) -> None:
        """Chain stored rejects (their ``record_id``, ``reason`` and ``raw`` as inserted)."""
        at = self._written_at()
        values = []
        for reject in rejects:
            record_id, reason, raw = reject["record_id"], reject["reason"], reject["raw"]
            record = chain.reject_hash(record_id, reason, raw)
            values.append(self._entry(chain.REJECT, None, record_id, record, at))
        self._insert(values)

    def finish(self) -> None:
        """Move the account's head to the last entry appended (before the commit)."""
        if self._entries is None:
            return
        head = self._head.hex()
        if self._known:
            values = {"head_account": self._account, "new_entries": self._entries, "new_head": head}
            self._conn.execute(_MOVE_HEAD, values)
        else:
            values = {"account": self._account, "entries": self._entries, "head": head}
            self._conn.execute(_NEW_HEAD, values)

    def _entry(
        self, kind: str, seq: int | None, record_id: str | None, record: bytes, at: Any
    ) -> tuple[Any, ...]:
        if self._entries is None:
            self._open()
        assert self._entries is not None
        self._entries += 1
        self._head = chain.entry_hash(self._head, self._entries, kind, seq, record_id, record)
        return (self._account, self._entries, kind, record_id, seq, record, self._head, at)

    def _open(self) -> None:
        row = self._conn.execute(_HEAD, {"account": self._account}).first()
        if row is None:
            self._entries, self._head = 0, chain.genesis(self._account)
        else:
            self._entries, self._head, self._known = int(row[0]), bytes.fromhex(row[1]), True

    def _written_at(self) -> Any:
        """Now, as the driver is given a time: SQLite's as the text every other time column
        holds (``sqlite_time``), which ``verify --since TIME`` compares as text."""
        dialect = self._conn.dialect.name
        if dialect == "sqlite":
            return sqlite_time(self._now())
        return db_time(self._now(), dialect)

    def _insert(self, values: list[tuple[Any, ...]]) -> None:
        """Straight to the driver, as the row upserts: SQLAlchemy's per-row parameter
        processing cost more than the hashing. PostgreSQL takes the entries by ``COPY``,
        their text made here in one block (psycopg's ``write_row`` per entry cost more
        than the hashing); MariaDB/MySQL as multi-row INSERTs of literals made here
        (PyMySQL escapes each value in Python: most of the ledger's cost there); SQLite by
        multi-row VALUES (one step of SQLite for up to 512 entries)."""
        if not values:
            return
        dialect = self._conn.dialect
        if dialect.name == "postgresql":
            driver = self._conn.connection.driver_connection
            assert driver is not None
            with driver.cursor().copy(_copy_sql(dialect)) as copy:
                copy.write(_copy_text(values))
            return
        if dialect.name != "sqlite":
            packet = max_packet(self._conn)
            driver = self._conn.connection.driver_connection
            assert packet is not None and driver is not None
            for statement in _mysql_inserts(dialect, driver.escape, values, packet // 2):
                self._conn.exec_driver_sql(statement, execution_options=_NO_PARAMETERS)
            return
        driver = self._conn.connection.driver_connection
        assert driver is not None
        # fewer where an older SQLite binds fewer than 32,766 parameters (999 before 3.32)
        most = min(
            _ROWS_PER_STATEMENT,
            driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_COLUMNS),
        )
        at = 0
        while at < len(values):
            left = len(values) - at
            size = min(most, 1 << (left.bit_length() - 1))
            flat = tuple(itertools.chain.from_iterable(values[at : at + size]))
            self._conn.exec_driver_sql(_insert_sql(dialect, size), flat)
            at += size


def _copy_text(values: list[tuple[Any, ...]]) -> str:
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


def _mysql_inserts(
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


def record_digest(row: Mapping[str, Any]) -> bytes:
    """A row's ``record_hash``: the SHA-256 of the text stored for it when that text is
    its canonical form (``parse_record`` writes a record of plain values with its keys
    sorted: ``etl.records.audit``), else of ``canonical_json`` of its ``raw``."""
    raw, text = row["raw"], row.get(RAW_JSON)
    if type(text) is str and type(raw) is dict and _PLAIN.issuperset(map(type, raw.values())):
        return _sha256(text.encode()).digest()
    return chain.record_hash(raw)


@functools.cache
def _copy_sql(dialect: Dialect) -> str:
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.quote(name) for name in _COLUMNS)
    return f"COPY {quote.format_table(ledger)} ({columns}) FROM STDIN"


@functools.cache
def _insert_sql(dialect: Dialect, rows: int) -> str:
    quote = dialect.identifier_preparer
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(quote.quote(name) for name in _COLUMNS)
    one = "(" + ", ".join([marker] * len(_COLUMNS)) + ")"
    values = ", ".join([one] * rows)  # none: the head of a statement of literals
    return f"INSERT INTO {quote.format_table(ledger)} ({columns}) VALUES {values}"
