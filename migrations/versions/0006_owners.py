"""Add the owners' epochs that fence every write.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

``zendesk_audit_owners`` has one row per lock owner: an account's runs (kind ``sync``)
and an export consumer's (kind ``export``). Whoever takes the lock adds one to
``epoch`` and keeps the value; each of its write transactions then updates the row
only where ``epoch`` is still that value (``commits`` counts them), so a writer whose
lock went to another run is refused inside its own transaction (etl.storage.locking.fence).

Re-runnable (etl.storage.ddl skips what exists). Written by hand; it does not import
etl.storage.schema so that it keeps meaning what it meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.storage import ddl

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Copied from 0001 on purpose, not imported: a revision must stay as it was.
MYSQL = ("mysql", "mariadb")
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
OWNERS = "zendesk_audit_owners"


def _timestamp() -> sa.types.TypeEngine[Any]:
    """UTC: timestamptz on PostgreSQL, naive DATETIME elsewhere (the code converts)."""
    return (
        sa.DateTime(timezone=True)
        .with_variant(postgresql.TIMESTAMP(timezone=True, precision=6), "postgresql")
        .with_variant(mysql.DATETIME(fsp=6), *MYSQL)
    )


def upgrade() -> None:
    ddl.create_table(
        OWNERS,
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("commits", sa.BigInteger(), nullable=False),
        sa.Column("taken_at", _timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "name", name=f"pk_{OWNERS}"),
        **TABLE_OPTIONS,
    )


def downgrade() -> None:
    op.drop_table(OWNERS)
