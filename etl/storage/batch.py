"""A transaction's batches: rows, rejects, checkpoints and run counters (``Store.transaction``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.records.audit import Reject
from etl.storage.history import RunCounts, count_pages
from etl.storage.ledger import LedgerWriter, written_rows
from etl.storage.limits import (
    RowUpsert,
    byte_batches,
    max_packet,
    packet_rejects,
    storable_reject,
    upsert_isolating,
)
from etl.storage.schema.logs import audit_logs
from etl.storage.schema.metadata import column_lengths
from etl.storage.schema.state import audit_rejects
from etl.storage.sequence import number_rows
from etl.storage.statements import SliceUpdate, WriteResult, save_slices

_RECORD_ID = column_lengths(audit_rejects)["record_id"]


class RejectLike(Protocol):
    """What ``etl.records.audit.Reject`` carries."""

    @property
    def record_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def raw(self) -> str: ...


class BatchTransaction:
    """Batches written into one open transaction (``Store.transaction``).

    Larger transactions cost the database less per row (SQLite writes each touched index
    page once per commit, and checkpoints its WAL less often), without holding more pages
    in memory: each batch's rows are written as soon as it comes. Its checkpoints (slices,
    watermark) and the run's counters are written once, before the commit: only their
    final values can be seen, and each statement is a round trip (or a GIL hand-off).
    """

    def __init__(
        self,
        conn: Connection,
        *,
        upsert: RowUpsert,
        advance_watermark: sa.Executable,
        now: Callable[[], datetime],
        table: sa.Table = audit_logs,
    ) -> None:
        self._conn = conn
        self._table = table  # where ``upsert`` writes: the ledger looks there for what it wrote
        self._upsert = upsert
        self._advance_watermark = advance_watermark
        self._now = now
        self._account: str | None = None
        self._slices: dict[int, SliceUpdate] = {}  # by id: the latest checkpoint
        self._watermark: datetime | None = None
        self._counts: dict[int, RunCounts] = {}  # by run id
        self._ledger: LedgerWriter | None = None

    def write_batch(
        self,
        account: str,
        run_id: int,
        rows: Sequence[Mapping[str, Any]],
        rejects: Sequence[RejectLike],
        *,
        pages: int = 1,
        watermark: datetime | None = None,
        slices: Sequence[SliceUpdate] = (),
    ) -> WriteResult:
        """``pages`` consecutive pages: their rows, rejects, the checkpoints of the
        ``slices`` they advance, the watermark and the run's counters, committed with the
        transaction.

        Rows with the same id: the last one wins.
        """
        conn = self._conn
        if self._account is None:
            self._account = account
            self._ledger = LedgerWriter(conn, account, self._now)
        elif account != self._account:
            raise ValueError(f"write_batch({account!r}) in a transaction of {self._account!r}")
        latest = {row["id"]: row for row in rows}
        if any(row["account"] != account for row in latest.values()):
            raise ValueError(f"write_batch({account!r}) got rows of another account")
        packet = max_packet(conn)
        # Rows that cannot be stored (too big for MySQL's packet; a value the database
        # refuses) become rejects: the rest of the batch commits.
        too_big = packet_rejects(latest, packet)
        # Store sequence (etl.storage.sequence): numbers reserved in this transaction, written by
        # the upsert with the row, kept only where the row is written.
        latest = number_rows(conn, account, latest)
        upserted = upsert_isolating(conn, self._upsert, account, latest)
        # The ledger (etl.storage.ledger): each version written, chained in this transaction.
        assert self._ledger is not None
        written = upserted.inserted + upserted.updated
        self._ledger.rows(written_rows(conn, self._table, account, latest, written))
        all_rejects = [*rejects, *too_big, *upserted.rejects]
        if all_rejects:
            self._write_rejects(account, run_id, all_rejects, packet)
        self._slices.update((update.id, update) for update in slices)
        if watermark is not None and (self._watermark is None or watermark > self._watermark):
            self._watermark = watermark  # the statement only advances it: the latest wins
        result = WriteResult(upserted.inserted, upserted.updated, len(all_rejects))
        self._counts.setdefault(run_id, RunCounts()).add(result, pages)
        return result

    def _write_rejects(
        self, account: str, run_id: int, rejects: Sequence[RejectLike], packet: int | None
    ) -> None:
        now = self._now()
        fitted = [storable_reject(Reject(r.record_id, r.reason, r.raw), packet) for r in rejects]
        values = [
            {
                "account": account,
                "run_id": run_id,
                "record_id": None if r.record_id is None else r.record_id[:_RECORD_ID],
                "reason": r.reason,
                "raw": r.raw,
                "rejected_at": now,
            }
            for r in fitted
        ]
        for batch in [values] if packet is None else byte_batches(values, packet // 2):
            self._conn.execute(audit_rejects.insert(), list(batch))
        assert self._ledger is not None
        self._ledger.rejects(values)

    def finish(self) -> None:
        """Write the checkpoints and counters of every batch (``Store.transaction`` calls
        it just before the commit)."""
        if self._account is None:
            return
        conn, account = self._conn, self._account
        if self._slices:
            save_slices(conn, account, list(self._slices.values()))
        if self._watermark is not None:
            conn.execute(
                self._advance_watermark,
                {"account": account, "watermark": self._watermark, "updated_at": self._now()},
            )
        for run_id, counts in self._counts.items():
            count_pages(conn, run_id, counts)
        if self._ledger is not None:
            self._ledger.finish()
