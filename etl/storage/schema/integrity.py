"""The ledger, its head and checkpoints, and the records of what checked it: verifications
and an unfinished reconcile's days (docs/INTEGRITY.md)."""

from __future__ import annotations

import sqlalchemy as sa

from etl.common.fields import ACCOUNT_LENGTH, RECORD_ID_LENGTH
from etl.storage.schema.coltypes import Digest, UTCDateTime, long_text
from etl.storage.schema.metadata import metadata

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
