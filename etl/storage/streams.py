"""A stream other than the audit log in the store: its state row, its pages, its status.

The audit log keeps its own state row (``zendesk_audit_sync_state``, keyed by account);
every other stream has one row per ``(account, stream)`` in ``zendesk_stream_state``. The
store reads and writes either given the stream's name (``etl.storage.statements.state_row``):
watermark, scope, backfill plan and status are the audit log's code. Pages go through the
store's own transaction (``Store.stream_transaction``), with this stream's upsert and
name (its watermark's statement follows from it): the same lock check, rejects, run
counters and store sequence.

The access log's rows go through its own upsert (``etl.storage.upserts.access_logs``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa

from etl.storage.batch import BatchTransaction, RejectLike
from etl.storage.history import AccountStatus, account_status, newest
from etl.storage.limits import RowUpsert
from etl.storage.statements import SliceRow, WriteResult
from etl.storage.store import Store
from etl.storage.upserts.access_logs import access_upsert

# Another log's status: an ``AccountStatus`` whose ``stream`` is not the audit log.
StreamStatus = AccountStatus


class LogState(Protocol):
    """What a run reads and writes of one log: its watermark, its pages, its backfill plan.
    ``Store`` is the audit log's; ``StreamStore`` another log's."""

    def watermark(self, account: str) -> datetime | None: ...
    def set_watermark(
        self, account: str, value: datetime, *, allow_backwards: bool = False
    ) -> datetime | None: ...
    def write_page(
        self,
        account: str,
        run_id: int,
        rows: Sequence[Mapping[str, Any]],
        rejects: Sequence[RejectLike],
        watermark: datetime | None,
    ) -> WriteResult: ...
    def unchanged(self, account: str, rows: Sequence[Mapping[str, Any]]) -> bool: ...
    def transaction(self) -> AbstractContextManager[BatchTransaction]: ...
    def slices(self, account: str) -> list[SliceRow]: ...
    def add_slices(
        self, account: str, spans: Sequence[tuple[datetime, datetime]]
    ) -> list[SliceRow]: ...
    def split_slice(
        self, account: str, slice_id: int, new_end: datetime, rest: tuple[datetime, datetime]
    ) -> SliceRow: ...
    def finish_plan(self, account: str, watermark: datetime | None) -> None: ...


class StreamStore:
    """One stream's state and pages in ``store``; ``table`` is where its rows go. Its
    backfill plan is kept with the audit log's, under its own name (``LogState``)."""

    def __init__(
        self, store: Store, stream: str, table: sa.Table, upsert: RowUpsert | None = None
    ) -> None:
        self.store = store
        self.stream = stream
        self.table = table
        self._upsert = upsert or access_upsert(store.engine.dialect)

    def watermark(self, account: str) -> datetime | None:
        return self.store.watermark(account, self.stream)

    def set_watermark(
        self, account: str, value: datetime, *, allow_backwards: bool = False
    ) -> datetime | None:
        """As ``Store.set_watermark``, by the store's clock."""
        return self.store.set_watermark(
            account, value, allow_backwards=allow_backwards, stream=self.stream
        )

    def scope(self, account: str) -> tuple[bool, str | None]:
        return self.store.scope(account, self.stream)

    def set_scope(self, account: str, scope: str, *, restart: bool) -> None:
        """Record ``scope``; with ``restart``, also drop the watermark and plan, atomically."""
        self.store.set_scope(account, scope, restart=restart, stream=self.stream)

    def newest(self, account: str, column: str) -> datetime | None:
        """The newest ``column`` stored for the account (None when it has no row)."""
        with self.store.reading("reading the newest record") as conn:
            return newest(conn, self.table, column, account)

    def write_page(
        self,
        account: str,
        run_id: int,
        rows: Sequence[Mapping[str, Any]],
        rejects: Sequence[RejectLike],
        watermark: datetime | None,
    ) -> WriteResult:
        """Upsert ``rows``, store ``rejects``, advance the stream's watermark and count,
        atomically, under the run lock's check."""
        with self.store.stream_transaction(self._upsert, self.table, self.stream) as tx:
            return tx.write_batch(account, run_id, rows, rejects, watermark=watermark)

    def unchanged(self, account: str, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Not compared here (``Store.unchanged`` is the audit log's): every page is written."""
        return False

    @contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        """Consecutive batches of this stream in one transaction (a backfill's writer)."""
        with self.store.stream_transaction(self._upsert, self.table, self.stream) as tx:
            yield tx

    def slices(self, account: str) -> list[SliceRow]:
        return self.store.slices(account, self.stream)

    def add_slices(
        self, account: str, spans: Sequence[tuple[datetime, datetime]]
    ) -> list[SliceRow]:
        return self.store.add_slices(account, spans, self.stream)

    def split_slice(
        self, account: str, slice_id: int, new_end: datetime, rest: tuple[datetime, datetime]
    ) -> SliceRow:
        return self.store.split_slice(account, slice_id, new_end, rest, self.stream)

    def finish_plan(self, account: str, watermark: datetime | None) -> None:
        self.store.finish_plan(account, watermark, self.stream)

    def status(self, account: str) -> StreamStatus:
        with self.store.reading("reading the status") as conn:
            return account_status(conn, account, self.stream, self.table)
