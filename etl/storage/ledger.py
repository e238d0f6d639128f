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
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from etl.records import chain
from etl.records.canonical import canonical_json
from etl.storage.schema import audit_logs, db_time, ledger, ledger_head
from etl.storage.sequence import SEQ_COLUMN

_sha256 = hashlib.sha256
_HEAD = (
    sa.select(ledger_head.c.entries, ledger_head.c.head)
    .where(ledger_head.c.account == sa.bindparam("account"))
    .with_for_update()
)
# The columns an entry is inserted with (``note`` only by the adoption, in revision 0008).
_COLUMNS = ("account", "entry", "kind", "record_id", "stored_seq", "record_hash", "entry_hash",
            "written_at")  # fmt: skip
_WRITTEN = sa.select(audit_logs.c.stored_seq).where(
    audit_logs.c.account == sa.bindparam("account"),
    audit_logs.c.stored_seq.between(sa.bindparam("lo"), sa.bindparam("hi")),
)


def written_rows(
    conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]], written: int
) -> list[Mapping[str, Any]]:
    """Those of a batch's numbered ``rows`` the upsert wrote (``written`` of them): all of
    them, usually; else those whose number is in the table (an unchanged record keeps its
    old number, a refused one has none)."""
    numbered = list(rows.values())
    if written == len(numbered) or not numbered:
        return numbered
    seqs = [row[SEQ_COLUMN] for row in numbered]
    params = {"account": account, "lo": min(seqs), "hi": max(seqs)}
    stored = set(conn.execute(_WRITTEN, params).scalars())
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
        """Chain written rows (with their ``stored_seq``), in store order."""
        at = self._written_at()
        self._insert(
            [
                self._entry(chain.ROW, row[SEQ_COLUMN], str(row["id"]),
                            _sha256(canonical_json(row["raw"]).encode()).digest(), at)
                for row in rows
            ]
        )  # fmt: skip

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
        values = {"entries": self._entries, "head": self._head.hex()}
        if self._known:
            self._conn.execute(
                sa.update(ledger_head).where(ledger_head.c.account == self._account), values
            )
        else:
            self._conn.execute(sa.insert(ledger_head).values(account=self._account, **values))

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
        """Now, as the driver is given a time (schema.db_time; SQLite's as SQLAlchemy's text)."""
        dialect = self._conn.dialect.name
        moment = db_time(self._now(), dialect)
        return moment.isoformat(" ", "microseconds") if dialect == "sqlite" else moment

    def _insert(self, values: list[tuple[Any, ...]]) -> None:
        """Straight to the driver's executemany: SQLAlchemy's per-row parameter processing
        cost more than the hashing (psycopg pipelines it, PyMySQL sends multi-row INSERTs;
        PostgreSQL's ``unnest`` over arrays measured no faster)."""
        if values:
            self._conn.exec_driver_sql(_insert_sql(self._conn.dialect), values)


@functools.cache
def _insert_sql(dialect: Dialect) -> str:
    quote = dialect.identifier_preparer
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    columns = ", ".join(quote.quote(name) for name in _COLUMNS)
    markers = ", ".join([marker] * len(_COLUMNS))
    return f"INSERT INTO {quote.format_table(ledger)} ({columns}) VALUES ({markers})"
