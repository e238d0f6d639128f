"""Where each account stands and what ran: watermarks and scopes, runs and their rejects,
backfill plans, the store sequence, export consumers, and who holds the right to write."""

from __future__ import annotations

import sqlalchemy as sa

from etl.common.fields import ACCOUNT_LENGTH, RECORD_ID_LENGTH, STREAM_LENGTH
from etl.storage.schema.coltypes import UTCDateTime, long_text
from etl.storage.schema.metadata import metadata

# A run row's status, and its kind (etl.storage.history refuses any other kind).
RUN_STATUSES = ("running", "success", "failed", "interrupted", "abandoned")
RUN_KINDS = ("sync", "resync")

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
