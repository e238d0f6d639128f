"""The copied records: a table per stream (log), a column per documented field and ``raw``."""

from __future__ import annotations

import sqlalchemy as sa

from etl.common.fields import (
    ACCESS_PATH_LENGTH,
    ACCESS_TEXT_LENGTHS,
    ACCOUNT_LENGTH,
    AUDIT_TEXT_LENGTHS,
)
from etl.storage.schema.coltypes import UTCDateTime, json_type, long_text
from etl.storage.schema.metadata import metadata

audit_logs = sa.Table(
    "zendesk_audit_logs",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("action", sa.String(AUDIT_TEXT_LENGTHS["action"])),
    sa.Column("action_label", long_text()),
    sa.Column("actor_id", sa.BigInteger),
    sa.Column("actor_name", long_text()),
    sa.Column("change_description", long_text()),
    sa.Column("created_at", UTCDateTime(fsp=0), nullable=False),
    sa.Column("ip_address", sa.String(AUDIT_TEXT_LENGTHS["ip_address"])),
    sa.Column("source_id", sa.BigInteger),
    sa.Column("source_label", long_text()),
    sa.Column("source_type", sa.String(AUDIT_TEXT_LENGTHS["source_type"])),
    sa.Column("url", long_text()),
    sa.Column("raw", json_type(), nullable=False),
    sa.Column("synced_at", UTCDateTime(), nullable=False),
    # The account's store sequence at the row's last write (insert, or update of a changed
    # record): the order rows were committed in, which ``export`` follows. See etl.storage.sequence.
    sa.Column("stored_seq", sa.BigInteger),
    sa.Index("ix_zendesk_audit_logs_account_created_at", "account", "created_at"),
    sa.Index("ix_zendesk_audit_logs_account_stored_seq", "account", "stored_seq"),
    sa.Index(
        "ix_zendesk_audit_logs_account_actor_id_created_at", "account", "actor_id", "created_at"
    ),
    sa.Index(
        "ix_zendesk_audit_logs_account_source_type_source_id",
        "account",
        "source_type",
        "source_id",
    ),
    sa.Index("ix_zendesk_audit_logs_account_action_created_at", "account", "action", "created_at"),
    sa.Index(
        "ix_zendesk_audit_logs_account_ip_address_created_at",
        "account",
        "ip_address",
        "created_at",
    ),
)

# The access log (GET /api/v2/access_logs, revision 0009): one column per documented field
# under its API name, ``path`` (the URL without its query, for "who viewed ticket 7?"),
# ``raw`` as sent. docs/ACCESS_LOGS.md.
access_logs = sa.Table(
    "zendesk_access_logs",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("id", sa.String(ACCESS_TEXT_LENGTHS["id"]), primary_key=True),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Column("user_id", sa.String(ACCESS_TEXT_LENGTHS["user_id"])),
    sa.Column("ip_address", sa.String(ACCESS_TEXT_LENGTHS["ip_address"])),
    sa.Column("method", long_text()),
    sa.Column("url", long_text()),
    sa.Column("path", sa.String(ACCESS_PATH_LENGTH)),
    sa.Column("status", sa.Integer),
    sa.Column("authorization_type", long_text()),
    sa.Column("client", long_text()),
    sa.Column("referer", long_text()),
    sa.Column("bytes_sent", sa.BigInteger),
    sa.Column("category", long_text()),
    sa.Column("summary", long_text()),
    sa.Column("origin_service", long_text()),
    sa.Column("graphql", json_type()),
    sa.Column("raw", json_type(), nullable=False),
    sa.Column("synced_at", UTCDateTime(), nullable=False),
    sa.Column("stored_seq", sa.BigInteger),
    sa.Index("ix_zendesk_access_logs_account_timestamp", "account", "timestamp"),
    sa.Index("ix_zendesk_access_logs_account_stored_seq", "account", "stored_seq"),
    sa.Index("ix_zendesk_access_logs_account_user_id_timestamp", "account", "user_id", "timestamp"),
    sa.Index("ix_zendesk_access_logs_account_path_timestamp", "account", "path", "timestamp"),
    sa.Index(
        "ix_zendesk_access_logs_account_ip_address_timestamp", "account", "ip_address", "timestamp"
    ),
)
