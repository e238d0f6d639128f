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

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from etl.integrity import streams
from etl.integrity.checkpoint import directory_checkpoints, stored_checkpoints
from etl.integrity.findings import AccountReport, Finding
from etl.integrity.keys import PublicKey
from etl.integrity.note import Checkpoint
from etl.integrity.streams import raw_digest
from etl.records import chain
from etl.storage.engine import database_errors

_sha256 = hashlib.sha256


@dataclass(frozen=True)
class VerifyOptions:
    public_keys: Sequence[PublicKey] = ()
    directory: Path | None = None
    since_entry: int | None = None
    since_time: datetime | None = None


def verify_account(engine: Engine, account: str, options: VerifyOptions) -> AccountReport:
    report = AccountReport(account)
    listed = _listed(options.directory, account)
    snapshot = _snapshot(engine)
    with database_errors(engine, "verifying the ledger"), snapshot.begin() as conn:
        held = stored_checkpoints(conn, account)
        _Walk(conn, account, report, options, [*held, *listed.values()]).run()
    if options.directory is not None:
        _compare_directory(report, options.directory, held, listed)
    return report


def _snapshot(engine: Engine) -> Engine:
    """Reads that all see one moment: REPEATABLE READ (PostgreSQL's snapshot, InnoDB's
    consistent read); SQLite's read transaction is one snapshot already (WAL)."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ")


def _listed(directory: Path | None, account: str) -> dict[str, Checkpoint]:
    if directory is None:
        return {}
    return {made.text: made for _, made in directory_checkpoints(directory, account)}


def _compare_directory(
    report: AccountReport, directory: Path, held: list[Checkpoint], listed: dict[str, Checkpoint]
) -> None:
    texts = {made.text for made in held}
    missing = [made for made in held if made.text not in listed]
    if missing:  # made while verify read the database: written to the directory since?
        listed = _listed(directory, report.account)
    for made in missing:
        if made.text not in listed:
            report.add(
                Finding(
                    "missing from the external copy",
                    report.account,
                    entry=made.size,
                    detail=f"checkpoint at entry {made.size} "
                    f"of {made.time} is in the database, not in {directory}",
                )
            )
    for made in listed.values():
        if made.text not in texts:
            report.add(
                Finding(
                    "missing from the database",
                    report.account,
                    entry=made.size,
                    detail=f"checkpoint at entry {made.size} of {made.time} is in "
                    f"{directory}, not in the database",
                )
            )


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
        self.sizes = {made.size for made in self.checkpoints}
        self.reached: dict[int, bytes] = {}  # size -> the chain's true hash there
        self.pending: dict[str, int] = {}  # record id -> its entry that has no row (yet)
        self.rejects: Counter[tuple[str | None, bytes]] = Counter()

    def run(self) -> None:
        conn, account = self.conn, self.account
        start = self._start()
        previous = chain.genesis(account)
        if start > 1:
            stored = streams.entry_hash_of(conn, account, start - 1)
            previous = bytes(stored) if stored else previous
        from_seq = streams.first_seq_from(conn, account, start) if start > 1 else None
        rows = streams.rows(conn, account, from_seq or -(2**63))
        last = self._chain(streams.entries(conn, account, start - 1), rows, start, previous)
        self._leftover_rows(rows, start)
        for record_id, entry in self.pending.items():
            self._find("deleted", record_id, entry, "its last stored version has no row")
        if start == 1:
            self._compare_rejects()
            self._check_head(last)
        self._check_checkpoints(start, last)

    def _start(self) -> int:
        options = self.options
        if options.since_entry is not None:
            return max(options.since_entry, 1)
        if options.since_time is not None:
            return streams.first_entry_since(self.conn, self.account, options.since_time)
        return 1

    def _chain(
        self,
        entries: Iterator[streams.Entry],
        rows: Iterator[streams.StoredRow],
        start: int,
        previous: bytes,
    ) -> tuple[int, bytes]:
        """Walk the entries; the last one's number and stored hash."""
        row = next(rows, None)
        expected, true_head, entry_hash = start, previous, chain.entry_hash
        for e in entries:
            if e.entry != expected:
                self._find(
                    "chain broken",
                    None,
                    e.entry,
                    f"entries {expected} to {e.entry - 1} are missing",
                )
            record = e.record_hash
            if type(record) is not bytes:  # a driver's memoryview
                record = bytes(record)
            if e.kind == chain.ROW:
                row = self._row(e, row, rows)
            elif e.kind == chain.REJECT:
                self.rejects[(e.record_id, record)] += 1
            elif e.kind != chain.ADOPTED or chain.note_hash(e.note or "") != record:
                self._find("chain broken", e.record_id, e.entry, "an adoption entry was altered")
            computed = entry_hash(previous, e.entry, e.kind, e.stored_seq, e.record_id, record)
            if true_head is previous:
                true_head = computed
            else:  # diverged at an earlier break: the true chain goes its own way
                true_head = entry_hash(
                    true_head, e.entry, e.kind, e.stored_seq, e.record_id, record
                )
            stored = e.entry_hash
            if computed != stored:
                stored = bytes(stored)
                self._find("chain broken", e.record_id, e.entry, "the entry's hash does not match")
                previous = stored
            else:
                previous = computed
            if e.entry in self.sizes:
                self.reached[e.entry] = true_head
            expected = e.entry + 1
        self.report.entries = expected - 1
        return expected - 1, previous

    def _row(
        self, e: streams.Entry, row: streams.StoredRow | None, rows: Iterator[streams.StoredRow]
    ) -> streams.StoredRow | None:
        seq, record_id = e.stored_seq or 0, e.record_id or ""
        while row is not None and row.seq < seq:
            self._inserted(row)
            row = next(rows, None)
        if row is None or row.seq != seq:
            self.pending[record_id] = e.entry
            return row
        if str(row.id) != record_id:
            self._inserted(row)
            self.pending[record_id] = e.entry
        else:
            self.pending.pop(record_id, None)
            self.report.records += 1
            if raw_digest(row.raw) != e.record_hash:
                self._find(
                    "modified",
                    record_id,
                    e.entry,
                    f"the row (stored_seq {seq}) differs from its ledger entry",
                )
        return next(rows, None)

    def _leftover_rows(self, rows: Iterator[streams.StoredRow], start: int) -> None:
        for row in rows:
            self._inserted(row)
        if start == 1:
            for record_id in streams.unnumbered_rows(self.conn, self.account):
                self._find("inserted", str(record_id), None, "a row without a stored_seq")

    def _inserted(self, row: streams.StoredRow) -> None:
        self._find("inserted", str(row.id), None, f"a row (stored_seq {row.seq}) no entry records")

    def _compare_rejects(self) -> None:
        stored: Counter[tuple[str | None, bytes]] = Counter()
        for record_id, reason, raw in streams.rejects(self.conn, self.account):
            stored[(record_id, chain.reject_hash(record_id, reason, raw))] += 1
        for (record_id, _), count in (stored - self.rejects).items():
            for _ in range(count):
                self._find(
                    "inserted", record_id, None, "a reject no entry records", subject="reject"
                )
        for (record_id, _), count in (self.rejects - stored).items():
            for _ in range(count):
                self._find(
                    "deleted",
                    record_id,
                    None,
                    "a reject's entry has no reject row",
                    subject="reject",
                )

    def _check_head(self, last: tuple[int, bytes]) -> None:
        found = streams.head(self.conn, self.account)
        entries, stored = last
        if found is None:
            if entries:
                self._find("chain broken", None, entries, "the ledger has no head row")
            return
        if found[0] > entries:
            self._find(
                "truncated",
                None,
                found[0],
                f"the head counts {found[0]} entries, the ledger ends at {entries}",
            )
        elif found[0] < entries or found[1] != stored.hex():
            self._find("chain broken", None, entries, "the head row does not match the ledger")

    def _check_checkpoints(self, start: int, last: tuple[int, bytes]) -> None:
        keys = {key.id: key for key in self.options.public_keys}
        anchored = start - 1
        for made in sorted(self.checkpoints, key=lambda c: c.size):
            if made.size < start and made.size >= 0:
                continue
            self.report.checkpoints += 1
            ok = self._signature_ok(made, keys) and self._reached(made, last[0])
            if ok:
                self.report.checkpoints_valid += 1
                if made.signature is not None and keys:
                    anchored = max(anchored, made.size)
        if anchored < last[0]:
            why = "unsigned" if not keys else "not covered by a valid signed checkpoint"
            self.report.notes.append(f"entries {anchored + 1} to {last[0]}: {why}")

    def _signature_ok(self, made: Checkpoint, keys: dict[str, PublicKey]) -> bool:
        if made.size < 0:
            self._find("bad signature", None, None, "a checkpoint that does not parse")
            return False
        if made.signature is None or not keys:
            return True  # unsigned, or no public key to check it with: a note says so
        key = keys.get(made.key_id or "")
        if key is None:
            self._find(
                "bad signature",
                None,
                made.size,
                f"checkpoint signed by key {made.key_id}, which is not among the public keys given",
            )
            return False
        if not key.verifies(made.signature, made.body):
            self._find("bad signature", None, made.size, "the checkpoint's signature is wrong")
            return False
        return True

    def _reached(self, made: Checkpoint, last: int) -> bool:
        if made.size > last:
            self._find(
                "truncated",
                None,
                made.size,
                f"a checkpoint covers {made.size} entries, the ledger ends at {last}",
            )
            return False
        if made.size == 0 or self.reached.get(made.size) != made.head:
            self._find(
                "chain broken",
                None,
                made.size,
                "the chain does not reach the checkpoint (its head differs)",
            )
            return False
        return True

    def _find(
        self,
        kind: str,
        record_id: str | None,
        entry: int | None,
        detail: str,
        subject: str = "record",
    ) -> None:
        self.report.add(Finding(kind, self.account, record_id, entry, detail, subject))
