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
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Connection, Engine

from etl.integrity import external, pages, streams
from etl.integrity.checkpoint import stored_checkpoints
from etl.integrity.checks import anchors
from etl.integrity.findings import AccountReport, Finding
from etl.integrity.keys import PublicKey
from etl.integrity.note import Checkpoint
from etl.records import chain
from etl.storage.engine import database_errors

_sha256 = hashlib.sha256
_FIXED = struct.Struct(">Q1sqH")  # as etl.records.chain's: number, kind, seq, id's length
_KIND_BYTES = {kind: kind.encode() for kind in chain.KINDS}
_AUDIT = "audit_logs"


@dataclass(frozen=True)
class VerifyOptions:
    public_keys: Sequence[PublicKey] = ()
    directory: Path | None = None
    since_entry: int | None = None
    since_time: datetime | None = None


def verify_account(engine: Engine, account: str, options: VerifyOptions) -> AccountReport:
    report = AccountReport(account)
    listed = external.listed(options.directory, account)
    snapshot = _snapshot(engine)
    with database_errors(engine, "verifying the ledger"), snapshot.begin() as conn:
        held = stored_checkpoints(conn, account)
        listed = external.whole(listed, held)  # less copies read while written
        _Walk(conn, account, report, options, [*held, *listed.values()]).run()
    if options.directory is not None:
        external.compare(report, options.directory, held, listed)
    return report


def _snapshot(engine: Engine) -> Engine:
    """Reads that all see one moment: REPEATABLE READ (PostgreSQL's snapshot, InnoDB's
    consistent read); SQLite's read transaction is one snapshot already (WAL)."""
    if engine.dialect.name == "sqlite":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ")


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
        # record id -> its entry that has no row (yet), and the stream it is taken for: the
        # stream of the last row matched before it (an entry names no stream; a store
        # transaction writes one stream's rows, so its neighbours are of its stream)
        self.pending: dict[str, tuple[int, str]] = {}
        self.stream = _AUDIT  # the stream of the last row matched
        self.counts = report.streams  # records verified, per stream
        self.rows_left: streams.StoredRow | None = None  # read past the last entry
        self.rejects: Counter[tuple[str | None, bytes]] = Counter()

    def run(self) -> None:
        conn, account = self.conn, self.account
        start = self._start()
        previous = chain.genesis(account)
        if start > 1:
            stored = streams.entry_hash_of(conn, account, start - 1)
            previous = bytes(stored) if stored else previous
        from_seq = streams.first_seq_from(conn, account, start) if start > 1 else None
        with pages.prefetching(conn):
            rows = streams.rows(conn, account, from_seq or -(2**63))
            last = self._chain(streams.entries(conn, account, start - 1), rows, start, previous)
            self._leftover_rows(rows)
        if start == 1:
            self._unnumbered_rows()
        for record_id, (entry, stream) in self.pending.items():
            self._find(
                "deleted", record_id, entry, "its last stored version has no row", stream=stream
            )
        if start == 1:
            rejects = streams.rejects(self.conn, self.account)
            anchors.compare_rejects(self._find, rejects, self.rejects)
            anchors.check_head(self._find, streams.head(self.conn, self.account), last)
        keys = self.options.public_keys
        anchors.check_checkpoints(
            self._find, self.report, self.checkpoints, keys, self.reached, start, last[0]
        )

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
        """Walk the entries; the last one's number and stored hash.

        The hot loop of verify, written for speed (tuples as the driver gives them, the
        entry hash's bytes written out as ``etl.records.chain.entry_hash`` makes them for
        the three kinds): it ran at 28,000 records/s through SQLAlchemy's rows."""
        row = next(rows, None)
        expected, true_head = start, previous
        tag, pack, sha, kinds = chain.ENTRY_TAG, _FIXED.pack, _sha256, _KIND_BYTES
        sizes, reached, pending, counts = self.sizes, self.reached, self.pending, self.counts
        matches, stream, matched = streams.matches, self.stream, 0  # matched: of ``stream``
        # SQLite and MariaDB give back the text the store wrote: a record of plain values
        # is its own canonical text (etl.records.audit), hashed as it is. PostgreSQL's
        # jsonb text has spaces, so it is never: parsed (given as str), as is any text the
        # quick hash does not match (``streams.matches``).
        quick = self.conn.dialect.name != "postgresql"
        for entry, kind, record_id, seq, record, stored, note in entries:
            if entry != expected:
                self._find(
                    "chain broken",
                    None,
                    entry,
                    f"entries {expected} to {entry - 1} are missing",
                )
            if type(record) is not bytes:  # a driver's memoryview
                record = bytes(record)
            if kind == "R":
                number, key = seq or 0, record_id or ""
                while row is not None and row[0] < number:
                    self._inserted(row)
                    row = next(rows, None)
                if row is None or row[0] != number:
                    pending[key] = (entry, stream)
                elif str(row[1]) != key:
                    self._inserted(row)
                    pending[key] = (entry, stream)
                else:
                    if pending:
                        pending.pop(key, None)
                    text = row[2]
                    if row[3] != stream:  # another stream's row: counted apart
                        counts[stream] += matched
                        stream, matched = row[3], 0
                    matched += 1
                    if not (quick and type(text) is bytes and sha(text).digest() == record) and (
                        not matches(text, record)
                    ):
                        self._find(
                            "modified",
                            key,
                            entry,
                            f"the row (stored_seq {number}) differs from its ledger entry",
                            stream=stream,
                        )
                    row = next(rows, None)
            elif kind == chain.REJECT:
                self.rejects[(record_id, record)] += 1
            elif kind != chain.ADOPTED or chain.note_hash(note or "") != record:
                self._find("chain broken", record_id, entry, "an adoption entry was altered")
            code = kinds.get(kind)
            if code is None:  # not a kind the job writes: the reference function says
                computed = chain.entry_hash(previous, entry, kind, seq, record_id, record)
            else:
                rid = record_id.encode() if record_id else b""
                fixed = pack(entry, code, seq or 0, len(rid))
                computed = sha(b"".join((tag, previous, fixed, rid, record))).digest()
            if true_head is previous:
                true_head = computed
            else:  # diverged at an earlier break: the true chain goes its own way
                true_head = chain.entry_hash(true_head, entry, kind, seq, record_id, record)
            if computed != stored:
                self._find("chain broken", record_id, entry, "the entry's hash does not match")
                previous = bytes(stored)
            else:
                previous = computed
            if entry in sizes:
                reached[entry] = true_head
            expected = entry + 1
        counts[stream] += matched
        self.stream, self.rows_left = stream, row
        self.report.entries = expected - 1
        return expected - 1, previous

    def _leftover_rows(self, rows: Iterator[streams.StoredRow]) -> None:
        if self.rows_left is not None:
            self._inserted(self.rows_left)
        for row in rows:
            self._inserted(row)

    def _unnumbered_rows(self) -> None:
        for stream, record_id in streams.unnumbered_rows(self.conn, self.account):
            self._find(
                "inserted", str(record_id), None, "a row without a stored_seq", stream=stream
            )

    def _inserted(self, row: streams.StoredRow) -> None:
        self._find(
            "inserted",
            str(row[1]),
            None,
            f"a row (stored_seq {row[0]}) no entry records",
            stream=row[3],
        )

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
