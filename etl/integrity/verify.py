"""``verify``: recompute every record hash and the chain, check every checkpoint, and say
what differs, by kind and by record id (docs/INTEGRITY.md).

Per account, in one snapshot of the database (so a sync running meanwhile is never taken
for tampering): the ledger is walked by entry and merged with the rows by ``stored_seq``.
A row entry whose number has a row is checked against it (*modified* when the row's hash
differs); one without a row is a version since superseded, or, if it is the record's last
entry, a *deleted* record; a row no entry numbers is *inserted*. Each entry's hash is
recomputed (*chain broken*), and the chain's true head at each checkpoint's size compared
with the checkpoint's (*chain broken*, or *truncated* when the ledger ends before it).
The checkpoint directory is listed before the snapshot and again for what it lacks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from etl.integrity import external, streams
from etl.integrity.checkpoint import stored_checkpoints
from etl.integrity.checks import anchors, columns
from etl.integrity.findings import AccountReport, Finding
from etl.integrity.keys import PublicKey
from etl.integrity.note import Checkpoint
from etl.integrity.pages import by_index
from etl.integrity.parallel.crew import Crew, snapshot
from etl.integrity.parallel.piece import FIRST_SEQ, Span
from etl.integrity.parallel.split import walk_ledger
from etl.integrity.reads import rows
from etl.records import chain
from etl.storage.engine import database_errors

_AUDIT, _ACCESS = "audit_logs", "access_logs"
# how an audit record's id reads as the ledger's text: str() of a BIGINT
_AUDIT_ID = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class VerifyOptions:
    """What verify checks: the keys, the checkpoint files, from which entry or time."""

    public_keys: Sequence[PublicKey] = ()
    directory: Path | None = None
    since_entry: int | None = None
    since_time: datetime | None = None


def verify_account(
    engine: Engine, account: str, options: VerifyOptions, crew: Crew | None = None
) -> AccountReport:
    """One account verified; a large ledger walked in spans over ``crew``'s processes
    too (``etl.integrity.parallel``), with the same findings in the same order."""
    report = AccountReport(account)
    listed = external.listed(options.directory, account)
    with database_errors(engine, "verifying the ledger"), snapshot(engine).begin() as conn:
        by_index(conn)
        held = stored_checkpoints(conn, account)
        listed = external.whole(listed, held)  # less copies read while written
        if not _altered(conn, report):
            _Walk(conn, account, report, options, [*held, *listed.values()]).run(crew)
    if options.directory is not None:
        external.compare(report, options.directory, held, listed)
    return report


def _altered(conn: Connection, report: AccountReport) -> bool:
    """Whether a column the walk reads as a number or bytes was retyped (``checks.columns``):
    each is a finding, and the walk, which would read its values otherwise than written,
    is not made."""
    wrong = columns.altered(conn)
    for table, column, now, made in wrong:
        kind = "chain broken" if table in columns.LEDGER_TABLES else "modified"
        detail = (
            f"the table {table}'s column {column} is {now}, where the job makes {made} "
            "(an ALTER TABLE): its values are not read as written, so no record is verified"
        )
        report.add(Finding(kind, report.account, None, None, detail))
    return bool(wrong)


class _Walk:
    """One account's ledger and rows, walked together."""

    def __init__(
        self,
        conn: Connection,
        account: str,
        report: AccountReport,
        options: VerifyOptions,
        checkpoints: list[Checkpoint],
    ) -> None:
        self.conn, self.account, self.report, self.options = conn, account, report, options
        self.checkpoints = list({made.text: made for made in checkpoints}.values())

    def run(self, crew: Crew | None) -> None:
        conn, account = self.conn, self.account
        start = self._start()
        previous = chain.genesis(account)
        if start > 1:
            stored = streams.entry_hash_of(conn, account, start - 1)
            previous = bytes(stored) if stored else previous
        from_seq = streams.first_seq_from(conn, account, start) if start > 1 else None
        sizes = frozenset(made.size for made in self.checkpoints)
        first = Span(start - 1, None, from_seq or FIRST_SEQ, None, previous, sizes, _AUDIT)
        walked = walk_ledger(conn, account, first, crew)
        report = self.report
        report.findings += walked.findings
        report.streams.update(walked.counts)
        report.entries = walked.last
        if start == 1:
            self._unnumbered_rows()
        # record id -> its entry that has no row. An entry names no stream, and the row
        # matched before it is of the transaction before when the deleted row was its
        # transaction's first (a run writes the audit log, then the access log), so the id
        # decides: the audit log's are BIGINT, the access log's ULIDs. An access id of
        # digits alone, which Zendesk does not send, is counted in the audit log's stream:
        # a label only; the finding and its id stand.
        for record_id, (entry, _) in walked.pending.items():
            stream = _AUDIT if _AUDIT_ID.fullmatch(record_id) else _ACCESS
            self._find(
                "deleted", record_id, entry, "its last stored version has no row", stream=stream
            )
        last = (walked.last, walked.stored)
        if start == 1:
            rejects = streams.rejects(self.conn, self.account)
            anchors.compare_rejects(self._find, rejects, walked.rejects)
            anchors.check_head(self._find, streams.head(self.conn, self.account), last)
        keys = self.options.public_keys
        anchors.check_checkpoints(
            self._find, report, self.checkpoints, keys, walked.reached, start, last[0]
        )

    def _start(self) -> int:
        options = self.options
        if options.since_entry is not None:
            return max(options.since_entry, 1)
        if options.since_time is not None:
            return streams.first_entry_since(self.conn, self.account, options.since_time)
        return 1

    def _unnumbered_rows(self) -> None:
        for stream, record_id, valued in rows.unnumbered_rows(self.conn, self.account):
            detail = (
                "a row whose stored_seq is not a number" if valued else "a row without a stored_seq"
            )
            self._find("inserted", str(record_id), None, detail, stream=stream)

    def _find(
        self,
        kind: str,
        record_id: str | None,
        entry: int | None,
        detail: str,
        subject: str = "record",
        stream: str | None = None,
    ) -> None:
        self.report.add(Finding(kind, self.account, record_id, entry, detail, subject, stream))
