"""Add the ledger, its heads, checkpoints and verifications; adopt what is stored.

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-05

``zendesk_audit_ledger`` chains every stored version of a record and every reject, per
account (etl.records.chain); ``zendesk_audit_ledger_head`` holds each account's last
entry, which a writer locks; ``zendesk_audit_checkpoints`` the signed (or unsigned)
checkpoints; ``zendesk_audit_verifications`` the outcome of each ``verify``.

Adoption: an account that already has rows or rejects gets a first entry of kind ``A``
whose note says when it was adopted and that what follows was chained as found, not as
written; then one entry per stored row (by ``stored_seq``) and per reject (by id). The
hash format is version 1 of etl.records.chain, which never changes (a new format gets a
new tag), so this revision keeps meaning what it meant.

Re-runnable: the DDL skips what exists (etl.storage.ddl); an account is adopted only if
it has no head yet, and its entries and head commit together.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.records import chain
from etl.storage import ddl

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = ("mysql", "mariadb")  # copied from 0001 on purpose, as every revision does
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
LEDGER = "zendesk_audit_ledger"
HEAD = "zendesk_audit_ledger_head"
CHECKPOINTS = "zendesk_audit_checkpoints"
VERIFICATIONS = "zendesk_audit_verifications"
_PAGE = 5000


def timestamp(fsp: int = 6) -> sa.types.TypeEngine[Any]:
    """UTC: timestamptz on PostgreSQL, naive DATETIME elsewhere (the code converts)."""
    return (
        sa.DateTime(timezone=True)
        .with_variant(postgresql.TIMESTAMP(timezone=True, precision=fsp), "postgresql")
        .with_variant(mysql.DATETIME(fsp=fsp), *MYSQL)
    )


def long_text() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *MYSQL)


def digest() -> sa.types.TypeEngine[Any]:
    """32 bytes: VARBINARY(32) on MySQL, bytea on PostgreSQL, BLOB on SQLite."""
    return sa.LargeBinary().with_variant(mysql.VARBINARY(32), *MYSQL)


def upgrade() -> None:
    ddl.create_table(
        LEDGER,
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("entry", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("record_id", sa.String(64)),
        sa.Column("stored_seq", sa.BigInteger()),
        sa.Column("record_hash", digest(), nullable=False),
        sa.Column("entry_hash", digest(), nullable=False),
        sa.Column("note", long_text()),
        sa.Column("written_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("account", "entry", name=f"pk_{LEDGER}"),
        # SQLite: the rows kept in the primary key's own tree, one tree written an entry
        # rather than two (InnoDB clusters by it anyway).
        sqlite_with_rowid=False,
        **TABLE_OPTIONS,
    )
    ddl.create_table(
        HEAD,
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("account", name=f"pk_{HEAD}"),
        **TABLE_OPTIONS,
    )
    ddl.create_table(
        CHECKPOINTS,
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head", sa.String(64), nullable=False),
        sa.Column("made_at", timestamp(), nullable=False),
        sa.Column("key_id", sa.String(16)),
        sa.Column("note", long_text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{CHECKPOINTS}"),
        **TABLE_OPTIONS,
    )
    ddl.create_index(f"ix_{CHECKPOINTS}_account_size", CHECKPOINTS, ["account", "size"])
    ddl.create_table(
        VERIFICATIONS,
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("finished_at", timestamp(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("checkpoints_valid", sa.Integer(), nullable=False),
        sa.Column("checkpoints", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{VERIFICATIONS}"),
        **TABLE_OPTIONS,
    )
    ddl.create_index(
        f"ix_{VERIFICATIONS}_account_finished_at", VERIFICATIONS, ["account", "finished_at"]
    )
    if not op.get_context().as_sql:
        _adopt(op.get_bind(), datetime.now(UTC))


# Lightweight tables: the columns this revision reads and writes, as they were.
_logs = sa.table(
    "zendesk_audit_logs", sa.column("account"), sa.column("id"), sa.column("stored_seq"),
    sa.column("raw"),
)  # fmt: skip
_rejects = sa.table(
    "zendesk_audit_rejects", sa.column("account"), sa.column("id"), sa.column("record_id"),
    sa.column("reason"), sa.column("raw"),
)  # fmt: skip
_ledger = sa.table(
    LEDGER, *(sa.column(n) for n in ("account", "entry", "kind", "record_id", "stored_seq",
    "note")), sa.column("record_hash", digest()), sa.column("entry_hash", digest()),
    sa.column("written_at", timestamp()),
)  # fmt: skip
_head = sa.table(HEAD, sa.column("account"), sa.column("entries"), sa.column("head"))


def _adopt(conn: sa.Connection, now: datetime) -> None:
    accounts = {
        *conn.execute(sa.select(_logs.c.account).distinct()).scalars(),
        *conn.execute(sa.select(_rejects.c.account).distinct()).scalars(),
    } - set(conn.execute(sa.select(_head.c.account)).scalars())
    for account in sorted(accounts):
        _adopt_account(conn, account, now)


def _adopt_account(conn: sa.Connection, account: str, now: datetime) -> None:
    rows = conn.execute(
        sa.select(sa.func.count()).select_from(_logs).where(_logs.c.account == account)
    ).scalar_one()
    rejects = conn.execute(
        sa.select(sa.func.count()).select_from(_rejects).where(_rejects.c.account == account)
    ).scalar_one()
    note = (
        f"adopted at {now.strftime('%Y-%m-%dT%H:%M:%SZ')}: the {rows} rows and {rejects} "
        "rejects that follow were stored before the ledger existed; they are chained as "
        "found at adoption, not as written"
    )
    previous, entry = chain.genesis(account), 0
    batch: list[dict[str, Any]] = []

    def add(kind: str, seq: int | None, record_id: str | None, record: bytes, text: Any) -> None:
        nonlocal previous, entry
        entry += 1
        previous = chain.entry_hash(previous, entry, kind, seq, record_id, record)
        batch.append({
            "account": account, "entry": entry, "kind": kind, "record_id": record_id,
            "stored_seq": seq, "record_hash": record, "entry_hash": previous,
            "note": text, "written_at": now,
        })  # fmt: skip
        if len(batch) >= _PAGE:
            conn.execute(sa.insert(_ledger), batch)
            batch.clear()

    add(chain.ADOPTED, None, None, chain.note_hash(note), note)
    for record_id, seq, raw in _stored_rows(conn, account):
        add(chain.ROW, seq, str(record_id), chain.record_hash(json.loads(raw)), None)
    for record_id, reason, raw in _stored_rejects(conn, account):
        add(chain.REJECT, None, record_id, chain.reject_hash(record_id, reason, raw), None)
    if batch:
        conn.execute(sa.insert(_ledger), batch)
    conn.execute(sa.insert(_head).values(account=account, entries=entry, head=previous.hex()))


def _stored_rows(conn: sa.Connection, account: str) -> Iterator[tuple[Any, int, str]]:
    """The account's rows as (id, stored_seq, raw text), by stored_seq, a page at a time."""
    last = -(2**63)
    while True:
        page = conn.execute(
            sa.select(_logs.c.id, _logs.c.stored_seq, sa.cast(_logs.c.raw, sa.Text))
            .where(_logs.c.account == account, _logs.c.stored_seq > last)
            .order_by(_logs.c.stored_seq)
            .limit(_PAGE)
        ).all()
        if not page:
            return
        for record_id, seq, raw in page:
            yield record_id, int(seq), raw
        last = page[-1][1]


def _stored_rejects(conn: sa.Connection, account: str) -> Iterator[tuple[str | None, str, str]]:
    last = 0
    while True:
        page = conn.execute(
            sa.select(_rejects.c.id, _rejects.c.record_id, _rejects.c.reason, _rejects.c.raw)
            .where(_rejects.c.account == account, _rejects.c.id > last)
            .order_by(_rejects.c.id)
            .limit(_PAGE)
        ).all()
        if not page:
            return
        for _, record_id, reason, raw in page:
            yield record_id, reason, raw
        last = page[-1][0]


def downgrade() -> None:
    op.drop_table(VERIFICATIONS)
    op.drop_table(CHECKPOINTS)
    op.drop_table(HEAD)
    op.drop_table(LEDGER)
