"""What ``verify`` reads of the ledger: its entries by entry, a stream of keyset pages
(flat memory, however large the table), its head row, the rejects, and the entries and
numbers a walk starts from. The rows it chains are read by ``etl.integrity.reads.rows``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.integrity import pages
from etl.integrity.mariadb import ledger as mariadb_ledger
from etl.integrity.pages import is_mariadb, mariadb_page, windows
from etl.integrity.reads import sql as shared
from etl.integrity.reads.rows import ROW_TABLES
from etl.integrity.sqlite import ledger as sqlite_ledger
from etl.storage.schema.integrity import ledger, ledger_head
from etl.storage.schema.state import audit_rejects, sync_runs

# An entry as read: entry, kind, record_id, stored_seq, record_hash, entry_hash, note.
Entry = tuple[int, str, str | None, int | None, bytes, bytes, str | None]


_LEDGER_COLUMNS = ("entry", "kind", "record_id", "stored_seq", "record_hash", "entry_hash", "note")


def ledger_page(conn: Connection) -> str:
    """The query of a ledger page (not MariaDB's): the account, the entry after which it
    starts, the last entry of its window (``windows``' parameters)."""
    return _ledger_page(conn, shared.PAGE)[2]


def _ledger_page(conn: Connection, size: int) -> tuple[str, str, str]:
    q, m = shared.names(conn)
    table = conn.dialect.identifier_preparer.format_table(ledger)
    entry = q("entry")
    where = f"FROM {table} WHERE {q('account')} = {m} AND {entry} > {m}"
    tail = f"{where} AND {entry} <= {m} ORDER BY {entry} LIMIT {size}"
    if conn.dialect.name == "sqlite":  # whatever a DBA wrote, read so that it cannot fail
        sql = f"SELECT {sqlite_ledger.columns(q)} {tail}"
        safe = f"SELECT {sqlite_ledger.columns(q, texts_as_bytes=True)} {tail}"
        return where, tail, pages.repairable(sql, safe, sqlite_ledger.repair)
    return where, tail, f"SELECT {', '.join(map(q, _LEDGER_COLUMNS))} {tail}"


def entries(conn: Connection, account: str, after: int, upto: int | None = None) -> Iterator[Entry]:
    """The account's entries after ``after`` (up to ``upto``), by entry."""
    q, m = shared.names(conn)
    entry = q("entry")
    mariadb = is_mariadb(conn)
    size = shared.MARIADB_PAGE if mariadb else shared.PAGE
    where, tail, sql = _ledger_page(conn, size)
    if mariadb:
        inner = ", ".join(f"{q(n)} AS {n}" for n in _LEDGER_COLUMNS)
        page = mariadb_page(
            mariadb_ledger.FRAMES, f"SELECT {inner} {tail}", sql, mariadb_ledger.decode
        )
        flat = f"SELECT COUNT(*), {mariadb_ledger.FRAMES} {where} AND {entry} <= {m}"
        page.first = mariadb_ledger.bounded(flat, size)
        sql = page
    # bounded above: SQLite keeps a text or a BLOB a DBA wrote there, above every number
    first = f"SELECT MIN({entry}) {where} AND {entry} >= {m} AND {entry} <= {pages.MAX_KEY}"

    def query(low: int, high: int) -> tuple[str, list[Any]]:
        return sql, [account, low - 1, high]

    def advance(last: Any, high: int) -> tuple[str, list[Any]] | None:
        # entries are the primary key's: none follows the window's last one in the window
        # (its query was the one empty query a window: 200 a million entries on MariaDB)
        return None if last[0] >= high else (sql, [account, last[0], high])

    last = pages.MAX_KEY if upto is None else upto
    read = windows(conn, first, [account, after], query, advance, size, last)
    return itertools.chain.from_iterable(read)


# A reject as read: record id, reason, raw, the stream of its run (None when its run row
# is gone), and whether its columns hold text as the job stores it.
StoredReject = tuple[str | None, str, str, str | None, bool]


def rejects(conn: Connection, account: str) -> Iterator[StoredReject]:
    """The account's rejects. On SQLite, which keeps what a DBA writes, a column of another
    storage class (a BLOB, a number) or a text that is not UTF-8 makes a reject unreadable
    (its bytes shown with U+FFFD): no entry's hash is its."""
    after = 0
    table, runs = audit_rejects, sync_runs
    joined = table.outerjoin(runs, table.c.run_id == runs.c.id)
    texts: list[Any] = [table.c.record_id, table.c.reason, table.c.raw]
    plain: Any = sa.true()
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        plain = sa.and_(
            sa.func.typeof(table.c.record_id).in_(("text", "null")),
            sa.func.typeof(table.c.reason) == "text",
            sa.func.typeof(table.c.raw) == "text",
        )
        texts = [sa.cast(column, sa.LargeBinary) for column in texts]
    while True:
        page: Sequence[Any] = conn.execute(
            sa.select(table.c.id, *texts, runs.c.stream, plain)
            .select_from(joined)
            .where(table.c.account == account, table.c.id > after)
            .order_by(table.c.id)
            .limit(shared.PAGE)
        ).all()
        for _, record_id, reason, raw, stream, readable in page:
            if sqlite:
                (record_id, id_utf8), (reason, reason_utf8), (raw, raw_utf8) = map(
                    sqlite_ledger.text, (record_id, reason, raw)
                )
                readable = readable and id_utf8 and reason_utf8 and raw_utf8
            yield record_id, reason, raw, stream, bool(readable)
        if len(page) < shared.PAGE:
            return
        after = page[-1][0]


def _count(value: Any) -> int:
    """A head row's count of entries; -1 (no ledger's) for what SQLite keeps that is none."""
    return int(value) if isinstance(value, int | float) else -1


def _only(conn: Connection, column: Any, storage: str) -> Any:
    """``column``, on SQLite NULL where it holds another storage class than ``storage``
    (a text that is not UTF-8 among them, which the driver refuses to decode)."""
    if conn.dialect.name != "sqlite":
        return column
    return sa.case((sa.func.typeof(column) == storage, column), else_=None)


def head(conn: Connection, account: str) -> tuple[int, str] | None:
    table = ledger_head.c
    value = _only(conn, table.head, "text")
    if conn.dialect.name == "sqlite":  # its bytes: a text that is not UTF-8 is none's hex
        value = sa.cast(value, sa.LargeBinary)
    row = conn.execute(
        sa.select(_only(conn, table.entries, "integer"), value).where(table.account == account)
    ).first()
    if row is None:
        return None
    text = sqlite_ledger.text(row[1])[0]
    return _count(row[0]), "" if text is None else text


def entry_hash_of(conn: Connection, account: str, entry: int) -> bytes | None:
    """The stored hash of ``entry`` (None: none, or on SQLite one not stored as bytes)."""
    hashed = _only(conn, ledger.c.entry_hash, "blob")
    return conn.execute(
        sa.select(hashed).where(ledger.c.account == account, ledger.c.entry == entry)
    ).scalar()


def first_entry_since(conn: Connection, account: str, moment: datetime) -> int:
    """The number of the account's first entry written at or after ``moment`` (or past the
    last when none was)."""
    found = conn.execute(
        sa.select(sa.func.min(ledger.c.entry)).where(
            ledger.c.account == account, ledger.c.written_at >= moment
        )
    ).scalar()
    if found is not None:
        return int(found)
    numbered = ledger.c.entry <= pages.MAX_KEY  # not SQLite's text or BLOB, above numbers
    last = conn.execute(
        sa.select(sa.func.max(ledger.c.entry)).where(ledger.c.account == account, numbered)
    ).scalar()
    return int(last or 0) + 1


def first_seq_from(conn: Connection, account: str, entry: int) -> int | None:
    """The ``stored_seq`` of the first row entry at or after ``entry``."""
    return conn.execute(
        sa.select(sa.func.min(ledger.c.stored_seq)).where(
            ledger.c.account == account, ledger.c.entry >= entry, ledger.c.kind == "R"
        )
    ).scalar()


def ledger_accounts(conn: Connection) -> list[str]:
    """The accounts with a ledger or rows: each table's by a probe of its account index an
    account (a DISTINCT read the whole table: a second a million rows on PostgreSQL)."""
    names = set(conn.execute(sa.select(ledger_head.c.account)).scalars())
    for table in ROW_TABLES.values():
        least = sa.select(sa.func.min(table.c.account))
        found = conn.execute(least).scalar()
        while found is not None:
            names.add(found)
            found = conn.execute(least.where(table.c.account > found)).scalar()
    return sorted(names)
