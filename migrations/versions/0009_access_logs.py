"""Add the access log's table, the other streams' state, and each run's stream.

Revision ID: 0009
Revises: 0005
Create Date: 2026-12-05

``zendesk_access_logs`` keeps ``GET /api/v2/access_logs`` (docs/ACCESS_LOGS.md): key
``(account, id)`` with the record's string id, one column per documented field, ``path``
(the URL without its query) and ``raw`` as sent, with indexes for who viewed what, by
user, path and IP. ``zendesk_stream_state`` holds the watermark and scope of each
stream other than the audit log, keyed ``(account, stream)``: the audit log's state row
and every statement on it stay as they were. ``zendesk_audit_sync_runs.stream`` says which
log a run read; every row before this revision read the audit log.

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

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL = ("mysql", "mariadb")  # copied from 0001 on purpose, as every revision does
TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}
ACCESS = "zendesk_access_logs"
STATE = "zendesk_stream_state"
RUNS = "zendesk_audit_sync_runs"
INDEXES = (
    ("account_timestamp", ["account", "timestamp"]),
    ("account_stored_seq", ["account", "stored_seq"]),
    ("account_user_id_timestamp", ["account", "user_id", "timestamp"]),
    ("account_path_timestamp", ["account", "path", "timestamp"]),
    ("account_ip_address_timestamp", ["account", "ip_address", "timestamp"]),
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


def json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    ddl.create_table(
        ACCESS,
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("timestamp", timestamp(), nullable=False),
        sa.Column("user_id", sa.String(64)),
        sa.Column("ip_address", sa.String(64)),
        sa.Column("method", long_text()),
        sa.Column("url", long_text()),
        sa.Column("path", sa.String(500)),
        sa.Column("status", sa.Integer()),
        sa.Column("authorization_type", long_text()),
        sa.Column("client", long_text()),
        sa.Column("referer", long_text()),
        sa.Column("bytes_sent", sa.BigInteger()),
        sa.Column("category", long_text()),
        sa.Column("summary", long_text()),
        sa.Column("origin_service", long_text()),
        sa.Column("graphql", json()),
        sa.Column("raw", json(), nullable=False),
        sa.Column("synced_at", timestamp(), nullable=False),
        sa.Column("stored_seq", sa.BigInteger()),
        sa.PrimaryKeyConstraint("account", "id", name="pk_zendesk_access_logs"),
        **TABLE_OPTIONS,
    )
    for name, columns in INDEXES:
        ddl.create_index(f"ix_zendesk_access_logs_{name}", ACCESS, columns)
    ddl.create_table(
        STATE,
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("watermark", timestamp()),
        sa.Column("scope", sa.Text()),
        sa.Column("updated_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("account", "stream", name="pk_zendesk_stream_state"),
        **TABLE_OPTIONS,
    )
    ddl.add_column(
        RUNS, sa.Column("stream", sa.String(32), nullable=False, server_default="audit_logs")
    )


def downgrade() -> None:
    with op.batch_alter_table(RUNS) as batch:
        batch.drop_column("stream")
    op.drop_table(STATE)
    for name, _ in INDEXES:
        op.drop_index(f"ix_zendesk_access_logs_{name}", ACCESS)
    op.drop_table(ACCESS)
