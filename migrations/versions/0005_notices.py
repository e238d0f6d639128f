"""Remember when each account's deprecation notice was last said.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05

``zendesk_audit_sync_state.notice`` names the notice last said for the account (the
API token's or the password's deprecation) and ``notice_at`` when. Every run is a new
process (cron, timers), so "say it once a day" needs a memory all runs share: the
account's state row. NULL, the value of every row written before this revision, means
"never said": the next run says it.

Re-runnable: MariaDB commits each DDL statement on its own, so a run killed between
the two columns must find the first and go on (``etl.storage.ddl`` skips what exists, as in
every revision). Written by hand; it does not import etl.storage.schema so that it keeps
meaning what it meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

from etl.storage import ddl

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "zendesk_audit_sync_state"
COLUMNS = ("notice", "notice_at")
MYSQL = ("mysql", "mariadb")  # copied from 0001 on purpose, as every revision does


def _timestamp() -> sa.types.TypeEngine[datetime]:
    """UTC, to the second: timestamptz on PostgreSQL, naive DATETIME elsewhere."""
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
    ddl.add_column(TABLE, sa.Column("notice", sa.String(32), nullable=True))
    ddl.add_column(TABLE, sa.Column("notice_at", _timestamp(), nullable=True))


def downgrade() -> None:
    present = [name for name in COLUMNS if name in _columns()]
    if present:
        with op.batch_alter_table(TABLE) as batch:
            for name in present:
                batch.drop_column(name)
