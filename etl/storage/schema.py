"""The tables, as SQLAlchemy Core metadata.

This module describes the schema for queries; it never creates it. Tables are
created and changed only by the Alembic revisions in ``migrations/versions``,
which must agree with what is here (``tests/test_migrations.py`` checks).

Every timestamp column is ``UTCDateTime``: aware UTC datetimes in and out on every
dialect (PostgreSQL ``timestamptz``; MySQL naive UTC; SQLite ISO 8601 text, ``sqlite_time``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from etl.common.fields import (
    ACCESS_PATH_LENGTH,
    ACCESS_TEXT_LENGTHS,
    ACCOUNT_LENGTH,
    AUDIT_TEXT_LENGTHS,
    RECORD_ID_LENGTH,
    STREAM_LENGTH,
)

# The column types live in etl.storage.coltypes; the schema's callers import these from here.
from etl.storage.coltypes import MYSQL_DIALECTS as MYSQL_DIALECTS
from etl.storage.coltypes import Digest, json_type, long_text
from etl.storage.coltypes import UTCDateTime as UTCDateTime
from etl.storage.coltypes import db_time as db_time
from etl.storage.coltypes import dialect_insert as dialect_insert
from etl.storage.coltypes import sqlite_time as sqlite_time

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Options the migrations give every table on MySQL/MariaDB: 4-byte UTF-8 and binary (case-
# and accent-sensitive) comparison, as on PostgreSQL and SQLite. Binary collation also
# makes the upsert's "raw changed?" test exact on MariaDB, whose JSON is LONGTEXT.
# tests/test_migrations.py checks the live tables against them. They are not passed to the
# tables below, which only query: ``mysql_*`` arguments would load SQLAlchemy's MySQL
# dialect in every run, whatever the database.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

# Alembic's version table: our own name, so that another application's Alembic
# history in the same database is never mistaken for ours.
VERSION_TABLE = "zendesk_audit_alembic_version"

RUN_STATUSES = ("running", "success", "failed", "interrupted", "abandoned")
RUN_KINDS = ("sync", "resync")


def column_lengths(table: sa.Table) -> dict[str, int]:
    """The bounded text columns of ``table`` and the characters each holds."""
    return {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, sa.String) and column.type.length
    }


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

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

sync_state = sa.Table(
    "zendesk_audit_sync_state",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("watermark", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The filters and start_time the watermark was read with (etl.sync.scope); NULL: adopt the
    # configuration's (rows from before revision 0003).
    sa.Column("scope", sa.Text()),
    # The deprecation notice last said for the account, and when (revision 0005): every
    # run is a new process, so "once a day" is remembered here, where all runs look.
    sa.Column("notice", sa.String(32)),
    sa.Column("notice_at", UTCDateTime(fsp=0)),
)

sync_runs = sa.Table(
    "zendesk_audit_sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(ACCOUNT_LENGTH), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("window_start", UTCDateTime()),
    sa.Column("window_end", UTCDateTime()),
    sa.Column("watermark_before", UTCDateTime()),
    sa.Column("watermark_after", UTCDateTime()),
    sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rate_limited", sa.Integer, nullable=False, server_default="0"),
    sa.Column("rows_inserted", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_updated", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("rows_rejected", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("error", long_text()),
    sa.Column("kind", sa.String(16), nullable=False, server_default="sync"),
    # Which log the run read (revision 0009): "audit_logs" or "access_logs".
    sa.Column("stream", sa.String(STREAM_LENGTH), nullable=False, server_default="audit_logs"),
    sa.Index("ix_zendesk_audit_sync_runs_account_started_at", "account", "started_at"),
)

# A parallel backfill's plan (etl/sync/backfill.py): the slices of one account's window, each
# with its checkpoint. ``position`` is the newest created_at committed in the slice.
sync_slices = sa.Table(
    "zendesk_audit_sync_slices",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(ACCOUNT_LENGTH), nullable=False),
    sa.Column("slice_start", UTCDateTime(), nullable=False),
    sa.Column("slice_end", UTCDateTime(), nullable=False),
    sa.Column("position", UTCDateTime()),
    sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    # Whose plan (revision 0012): "audit_logs" or "access_logs"; one plan per (account, stream).
    sa.Column("stream", sa.String(STREAM_LENGTH), nullable=False, server_default="audit_logs"),
    sa.Index("ix_zendesk_audit_sync_slices_account", "account"),
)

audit_rejects = sa.Table(
    "zendesk_audit_rejects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(ACCOUNT_LENGTH), nullable=False),
    sa.Column("run_id", sa.Integer, sa.ForeignKey(sync_runs.c.id), nullable=False),
    sa.Column("record_id", sa.String(RECORD_ID_LENGTH)),
    sa.Column("reason", long_text(), nullable=False),
    sa.Column("raw", long_text(), nullable=False),
    sa.Column("rejected_at", UTCDateTime(), nullable=False),
    sa.Index("ix_zendesk_audit_rejects_account_rejected_at", "account", "rejected_at"),
    sa.Index("ix_zendesk_audit_rejects_run_id", "run_id"),
)

# Per account, the last store sequence number handed out (etl.storage.sequence).
store_seq = sa.Table(
    "zendesk_audit_store_seq",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

# ``export``'s named consumers: per (consumer, account) the last store sequence number
# exported; per consumer, the file written and its length when that position committed
# (the same on each of the consumer's rows).
export_consumers = sa.Table(
    "zendesk_audit_export_consumers",
    metadata,
    sa.Column("consumer", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("file_path", long_text()),
    sa.Column("file_length", sa.BigInteger),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # The options the consumer was started with (revision 0007), equal on all its rows;
    # format NULL: not saved yet (a row from before). since_upto, per account: the rows
    # --since applies to (the account's head when the consumer's first export began).
    sa.Column("since", UTCDateTime(fsp=0)),
    sa.Column("format", sa.String(16)),
    sa.Column("since_upto", sa.BigInteger),
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

# The watermark and scope of every stream but the audit log's (which keeps its own row in
# zendesk_audit_sync_state, untouched): one row per (account, stream).
stream_state = sa.Table(
    "zendesk_stream_state",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("stream", sa.String(STREAM_LENGTH), primary_key=True),
    sa.Column("watermark", UTCDateTime()),
    sa.Column("scope", sa.Text()),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Who may write (etl.storage.locking.fence): per lock owner, an account's runs (kind ``sync``) or
# an export consumer's (``export``), the epoch its current holder took with the lock;
# every write transaction of that holder updates the row where the epoch is still its own.
owners = sa.Table(
    "zendesk_audit_owners",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("epoch", sa.BigInteger, nullable=False),
    sa.Column("commits", sa.BigInteger, nullable=False),
    sa.Column("taken_at", UTCDateTime(), nullable=False),
)

# The ledger (etl.storage.ledger, etl.records.chain): per account, every stored version of a
# record and every reject, numbered 1, 2, 3... in commit order, each hash chained to the one
# before. Only appended to, in the transaction of what it records.
ledger = sa.Table(
    "zendesk_audit_ledger",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("entry", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(1), nullable=False),  # R row, X reject, A adopted
    sa.Column("record_id", sa.String(RECORD_ID_LENGTH)),
    sa.Column("stored_seq", sa.BigInteger),
    sa.Column("record_hash", Digest(), nullable=False),  # 32 bytes
    sa.Column("entry_hash", Digest(), nullable=False),  # 32 bytes
    sa.Column("note", long_text()),  # an adoption entry's words, which its record_hash covers
    sa.Column("written_at", UTCDateTime(), nullable=False),  # not hashed: to find --since TIME
)

# Each account's last ledger entry, locked by the writer while it appends (so that two
# writers never chain onto the same entry); verify checks it agrees with the ledger.
ledger_head = sa.Table(
    "zendesk_audit_ledger_head",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("entries", sa.BigInteger, nullable=False),
    sa.Column("head", sa.String(64), nullable=False),
)

# Checkpoints of the ledger (etl.integrity.checkpoint): the note text as written to the
# checkpoint directory, signed or not; ``size`` entries, the last of which hashes to ``head``.
checkpoints = sa.Table(
    "zendesk_audit_checkpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(ACCOUNT_LENGTH), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("head", sa.String(64), nullable=False),
    sa.Column("made_at", UTCDateTime(), nullable=False),
    sa.Column("key_id", sa.String(16)),
    sa.Column("note", long_text(), nullable=False),
    sa.Index("ix_zendesk_audit_checkpoints_account_size", "account", "size"),
)

# The outcome of each ``verify`` that could write it (an auditor's read-only user cannot):
# what ``status`` and the metrics show.
verifications = sa.Table(
    "zendesk_audit_verifications",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("account", sa.String(ACCOUNT_LENGTH), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("checkpoints_valid", sa.Integer, nullable=False),
    sa.Column("checkpoints", sa.Integer, nullable=False),
    sa.Column("findings", sa.Integer, nullable=False),
    sa.Index("ix_zendesk_audit_verifications_account_finished_at", "account", "finished_at"),
)

# Each finished day of an unfinished ``reconcile`` (etl.integrity.reconcile_days): its
# result as JSON and the scope it was read under, so a killed one resumes; a reconcile
# that completes deletes its period's rows.
reconcile_days = sa.Table(
    "zendesk_audit_reconcile_days",
    metadata,
    sa.Column("account", sa.String(ACCOUNT_LENGTH), primary_key=True),
    sa.Column("period", sa.String(64), primary_key=True),  # since..until, as text
    sa.Column("day", sa.String(10), primary_key=True),  # YYYY-MM-DD, UTC
    sa.Column("scope", long_text(), nullable=False),
    sa.Column("result", long_text(), nullable=False),
    sa.Column("checked_at", UTCDateTime(), nullable=False),
)
