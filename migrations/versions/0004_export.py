"""Add the store sequence and the export consumers' positions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

``zendesk_audit_logs.stored_seq`` numbers each account's rows in the order they were
committed (a row rewritten because its record changed gets a new number), so that
``export`` can follow the table in storage order, late records included.
``zendesk_audit_store_seq`` holds each account's last number handed out, and
``zendesk_audit_export_consumers`` each named consumer's position and file.

Rows already stored are numbered by (synced_at, id), after any numbered ones.

Re-runnable: MariaDB and MySQL commit each DDL statement on its own, so a migration
killed half-way leaves some of it done; every step checks first and does only what is
missing (etl.storage.ddl), and the numbering touches only rows without a number.

Written by hand; it does not import etl.storage.schema so that it keeps meaning what it
meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.storage import ddl

# The revision ids: change them here only (and etl.storage.migrate.SCHEMA_HEAD).
revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copied from 0001 on purpose, not imported: a revision must stay as it was when the
# code around it changes.
MYSQL = ("mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
LOGS = "zendesk_audit_logs"
SEQ_INDEX = "ix_zendesk_audit_logs_account_stored_seq"
STORE_SEQ = "zendesk_audit_store_seq"
CONSUMERS = "zendesk_audit_export_consumers"

# Each row without a number gets the next ones of its account, by (synced_at, id).
_NUMBERED = (
    "SELECT l.account AS account, l.id AS id, b.base + row_number() OVER "
    "(PARTITION BY l.account ORDER BY l.synced_at, l.id) AS seq "
    f"FROM {LOGS} l JOIN (SELECT account, COALESCE(MAX(stored_seq), 0) AS base "
    f"FROM {LOGS} GROUP BY account) b ON b.account = l.account "
    "WHERE l.stored_seq IS NULL"
)


def timestamp(fsp: int = 6) -> sa.types.TypeEngine[Any]:
    """UTC: timestamptz on PostgreSQL, naive DATETIME elsewhere (the code converts)."""
    return (
        sa.DateTime(timezone=True)
        .with_variant(postgresql.TIMESTAMP(timezone=True, precision=fsp), "postgresql")
        .with_variant(mysql.DATETIME(fsp=fsp), *MYSQL)
    )


def long_text() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *MYSQL)


def upgrade() -> None:
    # etl.storage.ddl skips what exists: a kill between MariaDB's DDL and the stamp is finished here
    ddl.add_column(LOGS, sa.Column("stored_seq", sa.BigInteger()))
    ddl.create_index(SEQ_INDEX, LOGS, ["account", "stored_seq"])
    ddl.create_table(
        STORE_SEQ,
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", name=f"pk_{STORE_SEQ}"),
        **TABLE_OPTIONS,
    )
    ddl.create_table(
        CONSUMERS,
        sa.Column("consumer", sa.String(255), nullable=False),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("file_path", long_text()),
        sa.Column("file_length", sa.BigInteger()),
        sa.Column("updated_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "account", name=f"pk_{CONSUMERS}"),
        **TABLE_OPTIONS,
    )
    _number_existing_rows(op.get_context().dialect.name)


def _number_existing_rows(dialect: str) -> None:
    if dialect in MYSQL:
        numbering = (
            f"UPDATE {LOGS} t JOIN ({_NUMBERED}) s ON t.account = s.account AND t.id = s.id "
            "SET t.stored_seq = s.seq"
        )
    else:  # PostgreSQL, SQLite 3.33+
        numbering = (
            f"UPDATE {LOGS} SET stored_seq = s.seq FROM ({_NUMBERED}) AS s "
            f"WHERE {LOGS}.account = s.account AND {LOGS}.id = s.id"
        )
    op.execute(numbering)
    # Counters for the accounts that have none, from what is numbered.
    op.execute(
        f"INSERT INTO {STORE_SEQ} (account, last_seq) SELECT account, MAX(stored_seq) "
        f"FROM {LOGS} WHERE stored_seq IS NOT NULL AND account NOT IN "
        f"(SELECT account FROM {STORE_SEQ}) GROUP BY account"
    )


def downgrade() -> None:
    op.drop_table(CONSUMERS)
    op.drop_table(STORE_SEQ)
    op.drop_index(SEQ_INDEX, LOGS)
    with op.batch_alter_table(LOGS) as batch:
        batch.drop_column("stored_seq")
