"""Add the backfill's slice plan and the kind of each run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-15

``zendesk_audit_sync_slices`` holds a parallel backfill's plan: the time slices of
one account's window, each with its own checkpoint (``position``: the newest
``created_at`` committed in it), so a killed backfill resumes every slice where it
stopped. The plan is deleted when every slice is done. ``zendesk_audit_sync_runs.kind``
tells a ``sync`` from a ``resync``.

Written by hand; it does not import etl.storage.schema so that it keeps meaning what it
meant when it shipped. Each step creates only what is missing (``etl.storage.ddl``): on
MariaDB/MySQL, whose DDL commits statement by statement, a killed ``migrate`` is
finished by the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.storage import ddl

revision: str = "0002"
down_revision: str | None = "0001"
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


def timestamp(fsp: int = 6) -> sa.types.TypeEngine[Any]:
    """UTC: timestamptz on PostgreSQL, naive DATETIME elsewhere (the code converts)."""
    return (
        sa.DateTime(timezone=True)
        .with_variant(postgresql.TIMESTAMP(timezone=True, precision=fsp), "postgresql")
        .with_variant(mysql.DATETIME(fsp=fsp), *MYSQL)
    )


def upgrade() -> None:
    ddl.create_table(
        "zendesk_audit_sync_slices",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("slice_start", timestamp(), nullable=False),
        sa.Column("slice_end", timestamp(), nullable=False),
        sa.Column("position", timestamp()),
        sa.Column("done", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("id", name="pk_zendesk_audit_sync_slices"),
        **TABLE_OPTIONS,
    )
    ddl.create_index(
        "ix_zendesk_audit_sync_slices_account", "zendesk_audit_sync_slices", ["account"]
    )
    ddl.add_column(
        "zendesk_audit_sync_runs",
        sa.Column("kind", sa.String(16), nullable=False, server_default="sync"),
    )


def downgrade() -> None:
    with op.batch_alter_table("zendesk_audit_sync_runs") as batch:
        batch.drop_column("kind")
    op.drop_index("ix_zendesk_audit_sync_slices_account", "zendesk_audit_sync_slices")
    op.drop_table("zendesk_audit_sync_slices")
