"""Save each export consumer's options with its position.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-05

``zendesk_audit_export_consumers`` gains the options a consumer was started with:
``since`` (its ``--since``, NULL for none) and ``format`` (``raw`` or ``ocsf``), kept equal
on all of the consumer's rows like its file, and, per account, ``since_upto``: the
account's highest store sequence number when the consumer's first export of it started,
the rows ``--since`` applies to. A run killed during a consumer's first export resumes
with them, so its file ends as an uninterrupted export's would; a run asking for other
options is refused. ``format`` NULL, the value of every row written before this revision,
means "not saved": the next run saves its own.

Re-runnable (``etl.storage.ddl`` skips what exists, as in every revision). Written by hand;
it does not import etl.storage.schema so that it keeps meaning what it meant when it
shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.storage import ddl

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "zendesk_audit_export_consumers"
COLUMNS = ("since", "format", "since_upto")
MYSQL = ("mysql", "mariadb")  # copied from 0001 on purpose, as every revision does


def _timestamp() -> sa.types.TypeEngine[datetime]:
    """UTC, to the second (as ``created_at``): timestamptz on PostgreSQL, DATETIME elsewhere."""
    return (
        sa.DateTime(timezone=True)
        .with_variant(postgresql.TIMESTAMP(timezone=True, precision=0), "postgresql")
        .with_variant(mysql.DATETIME(fsp=0), *MYSQL)
    )


def _columns() -> set[str]:
    if op.get_context().as_sql:  # offline SQL for a DBA: nothing to inspect
        return set(COLUMNS)
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(TABLE)}


def upgrade() -> None:
    ddl.add_column(TABLE, sa.Column("since", _timestamp(), nullable=True))
    ddl.add_column(TABLE, sa.Column("format", sa.String(16), nullable=True))
    ddl.add_column(TABLE, sa.Column("since_upto", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    present = [name for name in COLUMNS if name in _columns()]
    if present:
        with op.batch_alter_table(TABLE) as batch:
            for name in present:
                batch.drop_column(name)
