"""The ledger's writer: each stored version and reject chained, in the transaction that
stores it (``BatchTransaction``); the entries inserted together and the account's head
moved once, before the commit.

The hashes are etl.records.chain's. A transaction that appends first locks the account's
head row (``SELECT ... FOR UPDATE``; SQLite's writer holds the database): a second writer
of the account waits for it and chains onto its last entry, so entries are numbered
1, 2, 3... in commit order with no fork. Nothing here updates or deletes an entry.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.records import chain
from etl.records.audit import RAW_CANONICAL, RAW_DIGEST, RAW_JSON
from etl.storage.ledger_sql.inserts import CopyRows, insert_entries
from etl.storage.schema.coltypes import db_time, sqlite_time
from etl.storage.schema.integrity import ledger_head
from etl.storage.sequence import SEQ_COLUMN

_sha256 = hashlib.sha256
_PLAIN = frozenset({str, int, bool, type(None)})
_ROW_KIND = chain.ROW.encode()
# What a row's entry hash covers (etl.records.chain), as one struct per length of record
# id: the tag, the previous hash, entry number, kind, stored_seq, the id's length, the id
# and the record hash.
_ENTRY_BYTES: dict[int, Callable[..., bytes]] = {}


def _entry_bytes(length: int) -> Callable[..., bytes]:
    pack = struct.Struct(f">{len(chain.ENTRY_TAG)}s32sQ1sqH{length}s32s").pack
    _ENTRY_BYTES[length] = pack
    return pack


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
# Entries kept for one insert before the commit (``finish``), inserted earlier only past
# this many: a statement or a COPY per transaction rather than per page (a page's 100
# entries were three SQLite statements, a COPY on PostgreSQL, an INSERT on MariaDB).
_PENDING = 4096


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
        # entries not inserted yet: tuples, or on PostgreSQL their COPY rows (``CopyRows``)
        self._pending: list[Any] = []
        self._copy = conn.dialect.name == "postgresql"

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Chain written rows (with their ``stored_seq``), in store order.

        ``chain.entry_hash``'s bytes, written out in this loop by one ``struct`` pack
        (tag, previous hash, fixed fields, record id and record hash at once): a call, a
        hash object and three byte strings less per row; verify recomputes them with
        ``chain.entry_hash``. The record hash is the parser's (``RAW_DIGEST``, made on a
        fetcher thread) when it gave one. On PostgreSQL each entry is packed here as its
        binary COPY row (``CopyRows``), not kept as a tuple to be read again."""
        rows = list(rows)
        if not rows:
            return
        at = self._written_at()
        if self._entries is None:
            self._open()
        assert self._entries is not None
        account, number, head = self._account, self._entries, self._head
        tag, kind = chain.ENTRY_TAG, chain.ROW
        copy = CopyRows(account, kind, at) if self._copy else None
        values: list[Any] = []
        append = values.append
        for row in rows:
            record = row.get(RAW_DIGEST)
            if record is None:
                record = record_digest(row)
            ident, seq = row["id"], row[SEQ_COLUMN]  # an audit row's id: an int
            rid = b"%d" % ident if type(ident) is int else str(ident).encode()
            size, number = len(rid), number + 1
            pack = _ENTRY_BYTES.get(size) or _entry_bytes(size)
            head = _sha256(pack(tag, head, number, _ROW_KIND, seq or 0, size, rid, record)).digest()
            if copy is not None and seq is not None:
                append(copy.row(number, rid, seq, record, head))
            else:
                entry = (account, number, kind, str(ident), seq, record, head, at)
                append(self._kept(entry))
        self._entries, self._head = number, head
        self._add(values)

    def rejects(self, rejects: Iterable[Mapping[str, Any]]) -> None:
        """Chain stored rejects (their ``record_id``, ``reason`` and ``raw`` as inserted)."""
        at = self._written_at()
        values = []
        for reject in rejects:
            record_id, reason, raw = reject["record_id"], reject["reason"], reject["raw"]
            record = chain.reject_hash(record_id, reason, raw)
            values.append(self._kept(self._entry(chain.REJECT, None, record_id, record, at)))
        self._add(values)

    def finish(self) -> None:
        """Insert the entries not inserted yet and move the account's head to the last
        one (before the commit)."""
        if self._entries is None:
            return
        insert_entries(self._conn, self._pending)
        self._pending = []
        head = self._head.hex()
        if self._known:
            values = {"head_account": self._account, "new_entries": self._entries, "new_head": head}
            self._conn.execute(_MOVE_HEAD, values)
        else:
            values = {"account": self._account, "entries": self._entries, "head": head}
            self._conn.execute(_NEW_HEAD, values)

    def _add(self, values: list[Any]) -> None:
        """Entries for the transaction's insert: in order, after those already kept."""
        self._pending += values
        if len(self._pending) >= _PENDING:
            insert_entries(self._conn, self._pending)
            self._pending = []

    def _entry(
        self, kind: str, seq: int | None, record_id: str | None, record: bytes, at: Any
    ) -> tuple[Any, ...]:
        if self._entries is None:
            self._open()
        assert self._entries is not None
        self._entries += 1
        self._head = chain.entry_hash(self._head, self._entries, kind, seq, record_id, record)
        return (self._account, self._entries, kind, record_id, seq, record, self._head, at)

    def _kept(self, entry: tuple[Any, ...]) -> Any:
        """An entry as ``_pending`` keeps it: its tuple, or on PostgreSQL its COPY row."""
        if not self._copy:
            return entry
        account, number, kind, record_id, seq, record, head, at = entry
        return CopyRows(account, kind, at).any_row(number, record_id, seq, record, head)

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


def record_digest(row: Mapping[str, Any]) -> bytes:
    """A row's ``record_hash``: the parser's (``RAW_DIGEST``) if it made one, else the
    SHA-256 of the text stored for it when that text is its canonical form
    (``parse_record`` writes a record of plain values with its keys sorted:
    ``etl.records.audit``, which says so by ``RAW_CANONICAL``), else of ``canonical_json``
    of its ``raw``."""
    digest = row.get(RAW_DIGEST)
    if digest is not None:
        return bytes(digest)
    raw, text = row["raw"], row.get(RAW_JSON)
    if type(text) is str and (
        row.get(RAW_CANONICAL) is True
        or (type(raw) is dict and _PLAIN.issuperset(map(type, raw.values())))
    ):
        return _sha256(text.encode()).digest()
    return chain.record_hash(raw)
