"""What ``verify`` reads, each a stream of keyset pages (flat memory, however large the
table): the ledger by entry, the rows of every stream's table by ``stored_seq`` with
``raw`` as text (merged: the streams share the account's store sequence), the rejects.

``raw`` is read as its text's bytes, not as the JSON type: what the text hashes to is
``etl.integrity.checks.raw``'s (parsing it there costs less than the JSON type's).
"""

from __future__ import annotations

import heapq
import itertools
import operator
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.integrity import pages
from etl.integrity.checks import derived, vouch
from etl.integrity.mariadb import frames as mariadb_frames
from etl.integrity.mariadb import ledger as mariadb_ledger
from etl.integrity.mariadb import rows as mariadb_rows
from etl.integrity.pages import is_mariadb, mariadb_page, windows
from etl.integrity.sqlite import ledger as sqlite_ledger
from etl.storage.schema.integrity import ledger, ledger_head
from etl.storage.schema.logs import access_logs, audit_logs
from etl.storage.schema.state import audit_rejects, sync_runs

PAGE = 25_000
# A page on MariaDB, read as one value (``pages.mariadb_page``): a few MB, well within the
# 16 MB ``max_allowed_packet`` it has by default (a larger page is read row by row).
_MARIADB_PAGE = 5000
# A row's derived columns where PostgreSQL vouched for them (``checks.vouch``): its empty
# text, read as bytes (``pages.text_as_bytes``); never a JSON array's.
VOUCHED = b""
# Each table of rows the ledger chains, by stream name (etl.sync.streams' names): their
# rows share the account's store sequence, so a ledger entry's ``stored_seq`` finds its row
# in whichever table holds it.
ROW_TABLES = {"audit_logs": audit_logs, "access_logs": access_logs}
# ``raw`` as the UTF-8 bytes of its text, which are hashed (no decoding into ``str`` and
# encoding back): SQLite's and MariaDB's the text as stored. PostgreSQL's jsonb text is
# never canonical (it has spaces), so it is always parsed: its bytes too (orjson reads
# them as well), as ``text`` (``convert_to`` them costs the server more) read as bytes by
# psycopg (``pages.text_as_bytes``; the stream's name is no ``text``, so stays a ``str``).
# SQLite's NULL where a DBA stored other than text (a BLOB of the same bytes, which SQL's
# JSON functions do not read as the record): the walk names such a row (``NOT_TEXT``).
_RAW_BYTES = {
    "sqlite": "CASE WHEN typeof({0}) = 'text' THEN CAST({0} AS BLOB) END",
    "postgresql": "{0}::text",
}
NOT_TEXT = "raw is not stored as text, so SQL does not read it as its record"
_STREAM = {"postgresql": "'{}'::varchar"}
# An entry as read: entry, kind, record_id, stored_seq, record_hash, entry_hash, note.
Entry = tuple[int, str, str | None, int | None, bytes, bytes, str | None]
# A stored row as read: stored_seq, id, raw text's bytes (None: not stored as text), stream
# name, its derived columns as one JSON array's text (``etl.integrity.checks.derived``;
# parsed already on MariaDB's pages; ``VOUCHED`` where PostgreSQL vouched for them,
# ``checks.vouch``).
StoredRow = tuple[int, Any, bytes | None, str, Any]


def _names(conn: Connection) -> tuple[Callable[[str], str], str]:
    """The dialect's identifier quoting and bound-parameter marker."""
    dialect = conn.dialect
    return dialect.identifier_preparer.quote, "?" if dialect.paramstyle == "qmark" else "%s"


_LEDGER_COLUMNS = ("entry", "kind", "record_id", "stored_seq", "record_hash", "entry_hash", "note")


def ledger_page(conn: Connection) -> str:
    """The query of a ledger page (not MariaDB's): the account, the entry after which it
    starts, the last entry of its window (``windows``' parameters)."""
    return _ledger_page(conn, PAGE)[2]


def _ledger_page(conn: Connection, size: int) -> tuple[str, str, str]:
    q, m = _names(conn)
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
    q, m = _names(conn)
    entry = q("entry")
    mariadb = is_mariadb(conn)
    size = _MARIADB_PAGE if mariadb else PAGE
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


def rows(
    conn: Connection, account: str, from_seq: int, until: int | None = None
) -> Iterator[StoredRow]:
    """The account's numbered rows of every stream from ``from_seq`` on (to before
    ``until``), by ``stored_seq`` (ties by stream, then id). A stream without rows costs
    one query, and merges nothing."""
    present = []
    last = pages.MAX_KEY if until is None else until - 1
    for name in ROW_TABLES:
        reader = _stream_rows(conn, account, from_seq, name, last)
        first = next(reader, None)
        if first is not None:
            present.append(itertools.chain((first,), reader))
    if len(present) == 1:
        return present[0]
    return heapq.merge(*present, key=operator.itemgetter(0))


def _stream_rows(
    conn: Connection, account: str, from_seq: int, stream: str, last: int
) -> Iterator[StoredRow]:
    """One table's numbered rows by (``stored_seq``, id), ``raw`` as text, its stream's
    name in each row: a window of ``stored_seq`` at a time (``pages.windows``), keyset pages
    inside it."""
    q, m = _names(conn)
    table = ROW_TABLES[stream]
    raw = _RAW_BYTES.get(conn.dialect.name, "CAST({0} AS BINARY)").format(q("raw"))
    seq, record_id = q("stored_seq"), q("id")
    name = conn.dialect.identifier_preparer.format_table(table)
    where = f"FROM {name} WHERE {q('account')} = {m} AND {seq} >= {m}"
    mariadb = is_mariadb(conn)
    size = _MARIADB_PAGE if mariadb else PAGE
    head = f"{where} AND {seq} <= {m}"
    tail = f" ORDER BY {seq}, {record_id} LIMIT {size}"
    # seq >= the last one seen, less what was seen at it: one range of the index, and a
    # number two rows share (only tampering does that) is not lost between pages.
    later = f"{head} AND NOT ({seq} = {m} AND {record_id} <= {m})"
    name_sql = _STREAM.get(conn.dialect.name, "'{}'").format(stream)
    values = derived.sql(conn.dialect.name, derived.STREAMS[stream], q, mariadb)
    if conn.dialect.name == "postgresql" and vouch.as_made(conn, name, stream):
        # the array only for a row the server does not vouch for
        vouched = vouch.postgresql(stream, derived.STREAMS[stream].columns, q)
        values = f"CASE WHEN {vouched} THEN '' ELSE {values} END"
    columns = f"SELECT {seq}, {record_id}, {raw}, {name_sql}, {values} "
    sql: str = pages.text_as_bytes(columns + head + tail)
    next_sql: str = pages.text_as_bytes(columns + later + tail)
    if mariadb:  # in the clustered index's order where it can (etl.integrity.mariadb.rows)
        text_ids = isinstance(table.c.id.type, sa.String)  # the access log's
        decode, keys = mariadb_frames.frames(stream, text_ids), (seq, record_id, q("raw"))
        page, ids = mariadb_rows.row_page, text_ids
        sql = page(keys, head, tail, sql, decode, size, ids, values)
        next_sql = page(keys, later, tail, next_sql, decode, size, ids, values)
    # bounded above: SQLite keeps a text or a BLOB a DBA wrote there, above every number
    # (``unnumbered_rows`` names such rows)
    first = f"SELECT MIN({seq}) {where} AND {seq} >= {m} AND {seq} <= {pages.MAX_KEY}"
    if mariadb:  # one lower bound: with two it read the whole table (mariadb_rows.first_key)
        first = mariadb_rows.first_key(name, q("account"), seq, m)

    def query(low: int, high: int) -> tuple[str, list[Any]]:
        return sql, [account, low, high]

    def advance(row: Any, high: int) -> tuple[str, list[Any]]:
        return next_sql, [account, row[0], high, row[0], row[1]]

    read = windows(conn, first, [account, from_seq], query, advance, size, last)
    return itertools.chain.from_iterable(read)


def unnumbered_rows(conn: Connection, account: str) -> list[tuple[str, Any, bool]]:
    """(stream, id, whether it has a value) of the account's rows without a number in
    ``stored_seq`` (the store always gives one): NULL, or on SQLite a text or a BLOB."""
    found = []
    for stream, table in ROW_TABLES.items():
        seq = table.c.stored_seq
        odd = sa.or_(seq.is_(None), seq > pages.MAX_KEY)  # the latter only on SQLite
        query = sa.select(table.c.id, seq.is_not(None)).where(table.c.account == account, odd)
        found += [(stream, row_id, bool(valued)) for row_id, valued in conn.execute(query)]
    return found


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
            .limit(PAGE)
        ).all()
        for _, record_id, reason, raw, stream, readable in page:
            if sqlite:
                (record_id, id_utf8), (reason, reason_utf8), (raw, raw_utf8) = map(
                    sqlite_ledger.text, (record_id, reason, raw)
                )
                readable = readable and id_utf8 and reason_utf8 and raw_utf8
            yield record_id, reason, raw, stream, bool(readable)
        if len(page) < PAGE:
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
