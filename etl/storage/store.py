"""The store: each batch of pages with its rows, rejects, checkpoints and run counters
committed atomically; consecutive batches may share one transaction (``Store.transaction``).

Its parts: ``etl.storage.reads`` (the reads, which ``Store`` inherits), ``etl.storage.batch``
(a transaction's batches), ``etl.storage.upserts.audit_logs`` (the per-dialect row upserts,
which never rewrite an unchanged row and count exactly what they wrote),
``etl.storage.statements`` (the state and backfill-plan statements), ``etl.storage.history``
(the runs' rows and the status read from them), ``etl.storage.limits`` (what each database
can hold: a row that cannot be stored becomes a reject) and ``etl.storage.locking.guard``
(the check against the run lock before each commit).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.clock import utc_now
from etl.common.errors import SchemaError
from etl.common.settings import AUDIT_LOGS, Settings
from etl.storage import migrate
from etl.storage.batch import BatchTransaction, RejectLike
from etl.storage.engine import check_connection, for_writing, open_engine
from etl.storage.history import (
    FAILURE_STATUSES,
    AccountStatus,
    RunInfo,
    check_final,
    check_kind,
    finish_run,
    start_run,
)
from etl.storage.limits import RowUpsert
from etl.storage.locking.fence import SYNC, take_fence
from etl.storage.locking.guard import HeldLock, LockGuard, guarded_transaction
from etl.storage.locking.lock import run_lock
from etl.storage.reads import StoreReader
from etl.storage.schema.logs import audit_logs
from etl.storage.statements import (
    SliceRow,
    SliceUpdate,
    WriteResult,
    claim_notice,
    finish_plan,
    insert_slice,
    set_scope,
    split_slice,
    state_upsert,
    watermark,
)
from etl.storage.upserts.audit_logs import row_upsert, stored_check
from etl.storage.upserts.driver import StoredCheck

__all__ = [
    "FAILURE_STATUSES",
    "AccountStatus",
    "BatchTransaction",
    "RejectLike",
    "RunInfo",
    "SliceRow",
    "SliceUpdate",
    "Store",
    "WriteResult",
]


class Store(StoreReader):
    """The reads (``StoreReader``), and the writes: each one a transaction checked against
    the run lock ``lock`` holds, if any."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = utc_now) -> None:
        super().__init__(engine)
        self._writer = for_writing(engine)
        self._guard = LockGuard()  # every commit but a run's last record checks the lock
        self._now = now
        self._upsert = row_upsert(engine.dialect)
        self._comparer = engine
        self._stored: StoredCheck | None = None  # made when a page is first compared

    # -- state ---------------------------------------------------------------------------

    def set_watermark(
        self,
        account: str,
        value: datetime,
        *,
        allow_backwards: bool = False,
        stream: str = AUDIT_LOGS,
    ) -> datetime | None:
        """Move ``stream``'s watermark to ``value``; only forwards unless ``allow_backwards``.
        The watermark now stored, read in the same transaction (a run reports it: no other
        transaction to read it in)."""
        dialect = self.engine.dialect.name
        statement = state_upsert(dialect, stream, advance_only=not allow_backwards)
        with self._writing("saving the watermark") as conn:
            conn.execute(
                statement, {"account": account, "watermark": value, "updated_at": self._now()}
            )
            return watermark(conn, account, stream)

    def set_scope(
        self, account: str, scope: str, *, restart: bool, stream: str = AUDIT_LOGS
    ) -> None:
        """Record ``scope`` as the one the watermark of ``stream`` belongs to; with ``restart``,
        also drop that watermark and backfill plan, atomically, so the next read starts over."""
        with self._writing("saving the sync scope") as conn:
            set_scope(conn, account, scope, self._now(), restart=restart, stream=stream)

    def claim_notice(self, account: str, notice: str, every: timedelta) -> bool:
        """Whether ``notice`` is due for ``account`` (not said in the last ``every``, or
        another one was); if so it counts as said now. Call under the account's lock."""
        with self._writing("recording a notice") as conn:
            return claim_notice(conn, account, notice, self._now(), every)

    # -- pages ---------------------------------------------------------------------------

    def write_page(
        self,
        account: str,
        run_id: int,
        rows: Sequence[Mapping[str, Any]],
        rejects: Sequence[RejectLike],
        watermark: datetime | None,
    ) -> WriteResult:
        """Upsert ``rows``, store ``rejects``, advance the watermark and count, atomically.

        Rows with the same id in one page: the last one wins.
        """
        with self.transaction() as transaction:
            return transaction.write_batch(account, run_id, rows, rejects, watermark=watermark)

    def unchanged(self, account: str, rows: Sequence[Mapping[str, Any]]) -> bool:
        """Whether every one of ``rows`` (the last of an id wins) is stored already with
        the same record, compared as the upsert compares (``stored_check``): a page re-read
        in the overlap that ``write_page`` would not change. One read, no transaction."""
        latest = {row["id"]: row for row in rows}
        if not latest or any(row["account"] != account for row in latest.values()):
            return False
        if self._stored is None:
            self._stored = stored_check(self.engine.dialect)
            if self.engine.dialect.name == "postgresql":  # it only reads: no BEGIN, COMMIT
                self._comparer = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        with guarded_transaction(self._comparer, self.engine, "comparing a page") as conn:
            return self._stored(conn, account, latest)

    @contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        """One transaction for consecutive batches (``BatchTransaction.write_batch``): all
        of them commit when the block ends, or none."""
        with self.stream_transaction(self._upsert, audit_logs, AUDIT_LOGS) as transaction:
            yield transaction

    @contextmanager
    def stream_transaction(
        self, upsert: RowUpsert, table: sa.Table, stream: str
    ) -> Iterator[BatchTransaction]:
        """``transaction`` for any stream: ``upsert`` writes its ``table``'s rows (no
        default: the ledger looks there for what was written) and the watermark moved is
        ``stream``'s (``etl.storage.streams``); the same lock check, rejects, run counters,
        store sequence and ledger as the audit log's."""
        with self._writing("writing a page") as conn:
            transaction = BatchTransaction(
                conn,
                upsert=upsert,
                advance_watermark=state_upsert(conn.dialect.name, stream, advance_only=True),
                now=self._now,
                table=table,
            )
            yield transaction
            transaction.finish()

    # -- a parallel backfill's plan ------------------------------------------------------

    # Each log has its own plan; ``stream`` says whose (the audit log's unless said).

    def add_slices(
        self, account: str, spans: Sequence[tuple[datetime, datetime]], stream: str = AUDIT_LOGS
    ) -> list[SliceRow]:
        """Add slices ``(start, end)`` to the account's plan, committed at once."""
        with self._writing("saving the backfill plan") as conn:
            ids = [insert_slice(conn, account, start, end, stream) for start, end in spans]
        return [
            SliceRow(i, start, end, None, False) for i, (start, end) in zip(ids, spans, strict=True)
        ]

    def split_slice(
        self,
        account: str,
        slice_id: int,
        new_end: datetime,
        rest: tuple[datetime, datetime],
        stream: str = AUDIT_LOGS,
    ) -> SliceRow:
        """End slice ``slice_id`` at ``new_end`` and add ``rest`` as a new slice, atomically.

        ``rest`` must start at or before ``new_end``: the two keep covering what the one did,
        so the plan never has a gap, whichever of the two commits a crash leaves behind.
        """
        if rest[0] > new_end:
            raise ValueError("a split must not leave a gap")
        with self._writing("splitting a backfill slice") as conn:
            return split_slice(conn, account, slice_id, new_end, rest, stream)

    def finish_plan(
        self, account: str, watermark: datetime | None, stream: str = AUDIT_LOGS
    ) -> None:
        """Delete the account's plan of ``stream`` and advance its watermark to the plan's
        end, atomically."""
        with self._writing("finishing the backfill plan") as conn:
            finish_plan(conn, account, stream, watermark, self._now())

    # -- runs ----------------------------------------------------------------------------

    def start_run(
        self,
        account: str,
        window_start: datetime,
        window_end: datetime,
        watermark_before: datetime | None,
        *,
        kind: str = "sync",
        stream: str = "audit_logs",
    ) -> int:
        """Record a new run, committed at once. Call it holding the account's lock: runs
        of the account still ``running`` (any stream's) are then known dead and marked
        ``abandoned``."""
        check_kind(kind)
        with self._writing("starting a run") as conn:
            window = (window_start, window_end)
            return start_run(
                conn, account, window, watermark_before, kind=kind, now=self._now(), stream=stream
            )

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        watermark_after: datetime | None,
        requests: int,
        rate_limited: int,
        error: str | None = None,
        add_pages: int = 0,
    ) -> None:
        """Close the run's row; ``add_pages``: pages it read but did not commit."""
        check_final(status)
        # Unchecked: it only closes this run's own row, also after the lock was lost.
        with self._writing("recording the end of a run", guarded=False) as conn:
            finish_run(
                conn,
                run_id,
                status,
                now=self._now(),
                watermark_after=watermark_after,
                requests=requests,
                rate_limited=rate_limited,
                error=error,
                add_pages=add_pages,
            )

    # -- locks ---------------------------------------------------------------------------

    def lock(
        self, account: str, wait: float = 0.0, sleep: Callable[[float], None] = time.sleep
    ) -> AbstractContextManager[HeldLock]:
        """The account's run lock; ``LockedError`` if another run holds it past ``wait`` s.
        With it, the account's write epoch (``etl.storage.locking.fence``). While it is held, each
        write transaction checks both (``LockLostError``); ``sleep`` spends the pauses
        between attempts (the CLI's ends at a signal)."""
        return self._guard.holding(
            run_lock(self.engine, account, wait, sleep),
            lambda: take_fence(self.engine, SYNC, account, self._now()),
        )

    # -- plumbing ------------------------------------------------------------------------

    def writing(self, doing: str) -> AbstractContextManager[Connection]:
        """A write transaction, checked against the run lock before it commits."""
        return self._writing(doing)

    def _writing(self, doing: str, *, guarded: bool = True) -> AbstractContextManager[Connection]:
        guard = self._guard if guarded else None
        return guarded_transaction(self._writer, self.engine, doing, guard)


@contextmanager
def open_store(
    settings: Settings, *, migrate_hint: str, read_only: bool = False
) -> Iterator[Store]:
    """An engine checked for reachability and schema version, as a ``Store``.

    ``read_only`` (``status``) never migrates, whatever ``auto_migrate`` says.
    """
    try:
        engine = open_engine(settings.database.url, create=not read_only)
    except SchemaError as exc:  # a SQLite file not made yet, and not made by looking
        raise SchemaError(f"{exc}; {migrate_hint}") from None
    try:
        # One connection and one statement for both checks when the schema is current.
        stored = check_connection(engine, migrate.stored_revision)
        auto_migrate = settings.database.auto_migrate and not read_only
        migrate.ensure_current(
            engine, auto_migrate=auto_migrate, migrate_hint=migrate_hint, stored=stored
        )
        yield Store(engine)
    finally:
        engine.dispose()
