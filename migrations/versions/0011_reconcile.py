"""Add the reconcile progress table: each finished day of an unfinished ``reconcile``.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

``zendesk_audit_reconcile_days`` keeps, per account and period (``since..until`` as
text), the result of each UTC day a ``reconcile`` has finished comparing, as JSON, with
the scope it was read under. A reconcile killed half-way resumes from it instead of
reading the finished days from the API again; a reconcile that completes deletes its
period's rows. Nothing else reads it: it is progress, not evidence (the report is).

Re-runnable, as every revision (``etl.storage.ddl`` skips what exists). Written by hand;
it does not import etl.storage.schema so that it keeps meaning what it meant when it
shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.storage import ddl

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = ("mysql", "mariadb")  # copied from 0001 on purpose, as every revision does
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
DAYS = "zendesk_audit_reconcile_days"


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
    ddl.create_table(
        DAYS,
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("scope", long_text(), nullable=False),
        sa.Column("result", long_text(), nullable=False),
        sa.Column("checked_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("account", "period", "day", name=f"pk_{DAYS}"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table(DAYS)
