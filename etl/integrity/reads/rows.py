"""The stored rows as ``verify`` reads them: every stream's table by ``stored_seq`` in
keyset pages (flat memory, however large the table), merged (the streams share the
account's store sequence), ``raw`` as its text's bytes and the derived columns as one
JSON array (``etl.integrity.checks.derived``).

``raw`` is read as its text's bytes, not as the JSON type: what the text hashes to is
``etl.integrity.checks.raw``'s (parsing it there costs less than the JSON type's).
"""

from __future__ import annotations

import heapq
import itertools
import operator
import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.integrity import pages
from etl.integrity.checks import derived, vouch
from etl.integrity.mariadb import frames as mariadb_frames
from etl.integrity.mariadb import rows as mariadb_rows
from etl.integrity.pages import is_mariadb, windows
from etl.integrity.reads import sql as shared
from etl.storage.schema.logs import access_logs, audit_logs

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
# A stored row as read: stored_seq, id, raw text's bytes (None: not stored as text), stream
# name, its derived columns as one JSON array's text (``etl.integrity.checks.derived``;
# parsed already on MariaDB's pages; ``VOUCHED`` where PostgreSQL vouched for them,
# ``checks.vouch``); on SQLite read in rowid order, a sixth: the rowid (``_stream_rows``).
StoredRow = tuple[int, Any, bytes | None, str, Any]


def rows(
    conn: Connection, account: str, from_seq: int, until: int | None = None
) -> Iterator[StoredRow]:
    """The account's numbered rows of every stream from ``from_seq`` on (to before
    ``until``), by ``stored_seq`` (ties by stream, then id; on SQLite by the order they
    were written, ``_by_rowid``). A stream without rows costs one query, and merges
    nothing."""
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
    q, m = shared.names(conn)
    table = ROW_TABLES[stream]
    raw = _RAW_BYTES.get(conn.dialect.name, "CAST({0} AS BINARY)").format(q("raw"))
    seq, record_id = q("stored_seq"), q("id")
    name = conn.dialect.identifier_preparer.format_table(table)
    where = f"FROM {name} WHERE {q('account')} = {m} AND {seq} >= {m}"
    mariadb = is_mariadb(conn)
    size = shared.MARIADB_PAGE if mariadb else shared.PAGE
    head = f"{where} AND {seq} <= {m}"
    tail = f" ORDER BY {seq}, {record_id} LIMIT {size}"
    # seq >= the last one seen, less what was seen at it: one range of the index, and a
    # number two rows share (only tampering does that) is not lost between pages.
    later = f"{head} AND NOT ({seq} = {m} AND {record_id} <= {m})"
    by_rowid = _by_rowid(conn, table.name)
    if by_rowid:
        # the (account, stored_seq) index holds the rowid, so its order needs no sort (by
        # id, SQLite sorted every page: a fifth of its reading). The last row's rowid is
        # read with it: looked up by its id, a DBA's second row of that id (no primary key)
        # and an index of theirs could pick the later rowid, and skip the rows between.
        tail = f" ORDER BY {seq}, rowid LIMIT {size}"
        later = f"{head} AND NOT ({seq} = {m} AND rowid <= {m})"
    whole = conn.dialect.name == "sqlite" and not by_rowid
    if whole:  # a rebuild leaves no rowid: (stored_seq, id) need not be unique either (no
        # primary key, or a DBA's own), and a page's sequel would skip a second row of the
        # last one's. A window is read whole (as wide as its rows are dense, ``windows``).
        tail = f" ORDER BY {seq}, {record_id}"
    name_sql = _STREAM.get(conn.dialect.name, "'{}'").format(stream)
    values = derived.sql(conn.dialect.name, derived.STREAMS[stream], q, mariadb)
    if conn.dialect.name == "postgresql" and vouch.as_made(conn, name, stream):
        # the array only for a row the server does not vouch for
        vouched = vouch.postgresql(stream, derived.STREAMS[stream].columns, q)
        values = f"CASE WHEN {vouched} THEN '' ELSE {values} END"
    rowid = ", rowid" if by_rowid else ""  # a sixth, the next page's key (``advance``)
    read_id = record_id
    if conn.dialect.name == "sqlite" and not isinstance(table.c.id.type, sa.String):
        # a rebuild without INTEGER affinity keeps an id a DBA wrote as text, which SQL's
        # ``id = 6100000162954`` then misses: never read as the entry's id (``quote``: a
        # BLOB's bytes as text need not be UTF-8, which the driver would refuse)
        read_id = f"CASE WHEN typeof({record_id}) = 'integer' THEN {record_id} ELSE "
        read_id += f"typeof({record_id}) || ' ' || quote({record_id}) END"
    columns = f"SELECT {seq}, {read_id}, {raw}, {name_sql}, {values}{rowid} "
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

    def advance(row: Any, high: int) -> tuple[str, list[Any]] | None:
        if whole:
            return None
        return next_sql, [account, row[0], high, row[0], row[5] if by_rowid else row[1]]

    read = windows(conn, first, [account, from_seq], query, advance, size, last)
    return itertools.chain.from_iterable(read)


def _by_rowid(conn: Connection, table: str) -> bool:
    """Whether SQLite's ``table`` has rowids that no column of it is called: not a table a
    DBA rebuilt ``WITHOUT ROWID``, nor with a column named ``rowid`` (whose values need
    not be unique: a page's sequel would lose a row that shares the last one's)."""
    if conn.dialect.name != "sqlite":
        return False
    driver = conn.connection.driver_connection
    assert driver is not None
    # ``table_xinfo``: ``table_info`` leaves out a generated column, which may be ``rowid``
    info = driver.execute("SELECT lower(name) FROM pragma_table_xinfo(?)", (table,))
    if "rowid" in {name for (name,) in info}:
        return False
    try:
        driver.execute(f'SELECT rowid FROM "{table}" LIMIT 0')
    except sqlite3.OperationalError:  # no such column: a WITHOUT ROWID table
        return False
    return True


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
