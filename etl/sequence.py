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

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.schema import MYSQL_DIALECTS

SEQ_COLUMN = "stored_seq"

_PORTABLE_RESERVE = sa.text(
    "INSERT INTO zendesk_audit_store_seq (account, last_seq) VALUES (:account, :count) "
    "ON CONFLICT (account) DO UPDATE "
    "SET last_seq = zendesk_audit_store_seq.last_seq + excluded.last_seq RETURNING last_seq"
)
_MYSQL_RESERVE = sa.text(
    "INSERT INTO zendesk_audit_store_seq (account, last_seq) VALUES (:account, :count) "
    "ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq)"
)
_MYSQL_LAST = sa.text("SELECT last_seq FROM zendesk_audit_store_seq WHERE account = :account")


def reserve(conn: Connection, account: str, count: int) -> int:
    """Take ``count`` numbers of ``account``'s sequence in ``conn``'s transaction; the
    first of them (they run to ``first + count - 1``)."""
    params = {"account": account, "count": count}
    if conn.dialect.name in MYSQL_DIALECTS:
        conn.execute(_MYSQL_RESERVE, params)
        last = conn.execute(_MYSQL_LAST, {"account": account}).scalar_one()
    else:  # PostgreSQL; SQLite 3.35+ (RETURNING)
        last = conn.execute(_PORTABLE_RESERVE, params).scalar_one()
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
