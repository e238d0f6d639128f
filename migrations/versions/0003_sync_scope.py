"""Record the scope (filters and start_time) each account's watermark was read with.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04

``zendesk_audit_sync_state.scope`` holds a canonical description of the filter set and
``start_time`` the watermark belongs to: when the configuration's differs, the next sync
reads the history again for the new set (see ``etl.sync.scope``). NULL, the value of every row
written before this revision, means "the scope in force": such rows are adopted by the next
sync without a re-read.

Re-runnable: MariaDB commits each DDL statement on its own, so a run killed after the
column was added but before the version was stamped must find the column and go on
(``etl.storage.ddl`` skips what exists, as in every revision). Written by hand; it does not import
etl.storage.schema so that it keeps meaning what it meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from etl.storage import ddl

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "zendesk_audit_sync_state"
COLUMN = "scope"


def _has_column() -> bool:
    if op.get_context().as_sql:  # offline SQL for a DBA: nothing to inspect
        return False
    columns = sa.inspect(op.get_bind()).get_columns(TABLE)
    return any(column["name"] == COLUMN for column in columns)


def upgrade() -> None:
    ddl.add_column(TABLE, sa.Column(COLUMN, sa.Text(), nullable=True))


def downgrade() -> None:
    if op.get_context().as_sql or _has_column():
        with op.batch_alter_table(TABLE) as batch:
            batch.drop_column(COLUMN)
