"""Say which log each backfill slice belongs to.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The access log is read by the same parallel backfill as the audit log: its plan is kept in
``zendesk_audit_sync_slices`` too, one plan per ``(account, stream)``. Every slice before
this revision was the audit log's.

Re-runnable, as every revision (``etl.storage.ddl`` skips what exists). Written by hand;
it does not import etl.storage.schema so that it keeps meaning what it meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from etl.storage import ddl

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLICES = "zendesk_audit_sync_slices"


def upgrade() -> None:
    ddl.add_column(
        SLICES,
        sa.Column("stream", sa.String(32), nullable=False, server_default="audit_logs"),
    )


def downgrade() -> None:
    with op.batch_alter_table(SLICES) as batch:
        batch.drop_column("stream")
