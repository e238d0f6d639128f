"""The store sequence: each account's rows numbered in the order they were committed.

Every batch the store writes first reserves as many numbers as it has rows, from the
account's counter row (``zendesk_audit_store_seq``), in the batch's own transaction, and
each row carries its number into the upsert (``stored_seq``). A row that is written
(new, or rewritten because its record changed) takes its number; an unchanged record is
not written and keeps its old one, so numbers may skip but never repeat.

Why commit order and number order agree: the counter row stays locked by the
transaction that moved it until that transaction ends (PostgreSQL and InnoDB row locks;
SQLite has one writer at a time). A second writer of the account waits for it, gets
higher numbers and commits later; a rolled-back batch gives its numbers back. So, at
any instant, the committed numbers of an account are all those up to some value (less
the skipped ones), and a reader that has seen up to ``n`` never later finds a new row
numbered below ``n``: ``export`` follows ``stored_seq > position`` without missing any.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.storage.schema.coltypes import MYSQL_DIALECTS, dialect_insert
from etl.storage.schema.logs import audit_logs
from etl.storage.schema.state import store_seq

SEQ_COLUMN = audit_logs.c.stored_seq.name

_ACCOUNT: sa.BindParameter[str] = sa.bindparam("account")
_COUNT: sa.BindParameter[int] = sa.bindparam("count")
_LAST = sa.select(store_seq.c.last_seq).where(store_seq.c.account == _ACCOUNT)


@functools.cache
def _reserve(dialect: str) -> sa.Executable:
    """Add ``count`` to the account's ``last_seq`` (creating its row); built once a dialect.
    PostgreSQL's and SQLite's (3.35+) return the new value, MySQL's is read after it."""
    insert = dialect_insert(dialect, store_seq).values(account=_ACCOUNT, last_seq=_COUNT)
    last_seq = store_seq.c.last_seq
    if dialect in MYSQL_DIALECTS:
        statement: sa.Executable = insert.on_duplicate_key_update(
            last_seq=last_seq + insert.inserted.last_seq
        )
    else:
        statement = insert.on_conflict_do_update(
            index_elements=[store_seq.c.account],
            set_={last_seq.name: last_seq + insert.excluded.last_seq},
        ).returning(last_seq)
    return statement


def reserve(conn: Connection, account: str, count: int) -> int:
    """Take ``count`` numbers of ``account``'s sequence in ``conn``'s transaction; the
    first of them (they run to ``first + count - 1``)."""
    params = {"account": account, "count": count}
    dialect = conn.dialect.name
    if dialect in MYSQL_DIALECTS:
        conn.execute(_reserve(dialect), params)
        last = conn.execute(_LAST, {"account": account}).scalar_one()
    else:
        last = conn.execute(_reserve(dialect), params).scalar_one()
    return int(last) - count + 1


def number_rows(
    conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
) -> dict[Any, Mapping[str, Any]]:
    """``rows`` (by id, in batch order), each with its ``stored_seq``: the next numbers
    of the account, in that order. The store calls it in the batch's transaction, just
    before the upsert, which writes ``stored_seq`` with the other columns."""
    if not rows:
        return {}
    first = reserve(conn, account, len(rows))
    return {
        record_id: {**row, SEQ_COLUMN: first + offset}
        for offset, (record_id, row) in enumerate(rows.items())
    }
