"""Create the audit log, sync state, run history and rejects tables.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

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

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

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


def long_text() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *MYSQL)


def json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def counter(name: str, kind: type[sa.Integer] = sa.Integer) -> sa.Column[Any]:
    return sa.Column(name, kind(), nullable=False, server_default="0")


def upgrade() -> None:
    ddl.create_table(
        "zendesk_audit_logs",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False, autoincrement=False),
        sa.Column("action", sa.String(255)),
        sa.Column("action_label", long_text()),
        sa.Column("actor_id", sa.BigInteger()),
        sa.Column("actor_name", long_text()),
        sa.Column("change_description", long_text()),
        sa.Column("created_at", timestamp(0), nullable=False),
        sa.Column("ip_address", sa.String(64)),
        sa.Column("source_id", sa.BigInteger()),
        sa.Column("source_label", long_text()),
        sa.Column("source_type", sa.String(255)),
        sa.Column("url", long_text()),
        sa.Column("raw", json(), nullable=False),
        sa.Column("synced_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("account", "id", name="pk_zendesk_audit_logs"),
        **TABLE_OPTIONS,
    )
    for name, columns in (
        ("account_created_at", ["account", "created_at"]),
        ("account_actor_id_created_at", ["account", "actor_id", "created_at"]),
        ("account_source_type_source_id", ["account", "source_type", "source_id"]),
        ("account_action_created_at", ["account", "action", "created_at"]),
        ("account_ip_address_created_at", ["account", "ip_address", "created_at"]),
    ):
        ddl.create_index(f"ix_zendesk_audit_logs_{name}", "zendesk_audit_logs", columns)

    ddl.create_table(
        "zendesk_audit_sync_state",
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("watermark", timestamp()),
        sa.Column("updated_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_zendesk_audit_sync_state"),
        **TABLE_OPTIONS,
    )

    ddl.create_table(
        "zendesk_audit_sync_runs",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("started_at", timestamp(), nullable=False),
        sa.Column("finished_at", timestamp()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("window_start", timestamp()),
        sa.Column("window_end", timestamp()),
        sa.Column("watermark_before", timestamp()),
        sa.Column("watermark_after", timestamp()),
        counter("pages"),
        counter("requests"),
        counter("rate_limited"),
        counter("rows_inserted", sa.BigInteger),
        counter("rows_updated", sa.BigInteger),
        counter("rows_rejected", sa.BigInteger),
        sa.Column("error", long_text()),
        sa.PrimaryKeyConstraint("id", name="pk_zendesk_audit_sync_runs"),
        **TABLE_OPTIONS,
    )
    ddl.create_index(
        "ix_zendesk_audit_sync_runs_account_started_at",
        "zendesk_audit_sync_runs",
        ["account", "started_at"],
    )

    ddl.create_table(
        "zendesk_audit_rejects",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("account", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(64)),
        sa.Column("reason", long_text(), nullable=False),
        sa.Column("raw", long_text(), nullable=False),
        sa.Column("rejected_at", timestamp(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_zendesk_audit_rejects"),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["zendesk_audit_sync_runs.id"],
            name="fk_zendesk_audit_rejects_run_id_zendesk_audit_sync_runs",
        ),
        **TABLE_OPTIONS,
    )
    ddl.create_index(
        "ix_zendesk_audit_rejects_account_rejected_at",
        "zendesk_audit_rejects",
        ["account", "rejected_at"],
    )
    ddl.create_index("ix_zendesk_audit_rejects_run_id", "zendesk_audit_rejects", ["run_id"])


def downgrade() -> None:
    op.drop_table("zendesk_audit_rejects")
    op.drop_table("zendesk_audit_sync_runs")
    op.drop_table("zendesk_audit_sync_state")
    op.drop_table("zendesk_audit_logs")
