"""A stream other than the audit log in the store: its state row, its pages, its status.

The audit log keeps its own state row (``zendesk_audit_sync_state``, keyed by account) and
its statements, untouched; every other stream has one row per ``(account, stream)`` in
``zendesk_stream_state``. Pages go through the store's own transaction
(``Store.stream_transaction``), with this stream's upsert and watermark statement: the same
lock check, rejects, run counters and store sequence as the audit log's.

The access log's rows go through its own upsert (``etl.storage.upserts.access_logs``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.common.clock import utc_now
from etl.storage.batch import BatchTransaction, RejectLike
from etl.storage.history import FAILURE_STATUSES, RunInfo, newest, runs, stream_rejects
from etl.storage.limits import RowUpsert
from etl.storage.schema import (
    MYSQL_DIALECTS,
    dialect_insert,
    stream_state,
    sync_slices,
)
from etl.storage.statements import SliceRow, WriteResult, of_stream
from etl.storage.store import Store
from etl.storage.upserts.access_logs import access_upsert


@dataclass(frozen=True)
class StreamStatus:
    account: str
    stream: str
    watermark: datetime | None
    rows: int
    rejects: int
    last_run: RunInfo | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    last_failure_error: str | None


def _watermark_upsert(dialect: str, stream: str, *, advance_only: bool) -> sa.Executable:
    """Set the stream's watermark (creating its row); if ``advance_only``, never backwards.
    Executed with ``account``, ``watermark`` and ``updated_at``, as the audit log's."""
    current = stream_state.c.watermark
    values = {
        "account": sa.bindparam("account"),
        "stream": sa.literal(stream),
        "watermark": sa.bindparam("watermark"),
        "updated_at": sa.bindparam("updated_at"),
    }
    ins = dialect_insert(dialect, stream_state).values(**values)

    def new_value(proposed: Any) -> Any:
        if not advance_only:
            return proposed
        return sa.case((sa.or_(current.is_(None), proposed > current), proposed), else_=current)

    if dialect in MYSQL_DIALECTS:
        statement: sa.Executable = ins.on_duplicate_key_update(
            [
                ("watermark", new_value(ins.inserted.watermark)),
                ("updated_at", ins.inserted.updated_at),
            ]
        )
    else:
        statement = ins.on_conflict_do_update(
            index_elements=[stream_state.c.account, stream_state.c.stream],
            set_={
                "watermark": new_value(ins.excluded.watermark),
                "updated_at": ins.excluded.updated_at,
            },
        )
    return statement


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
        dialect = store.engine.dialect
        self._upsert = upsert or access_upsert(dialect)
        self._advance = _watermark_upsert(dialect.name, stream, advance_only=True)
        self._replace = _watermark_upsert(dialect.name, stream, advance_only=False)
        self._now = utc_now

    def _key(self, account: str) -> sa.ColumnElement[bool]:
        return sa.and_(stream_state.c.account == account, stream_state.c.stream == self.stream)

    def watermark(self, account: str) -> datetime | None:
        with self.store.reading("reading the watermark") as conn:
            return self._watermark(conn, account)

    def _watermark(self, conn: Connection, account: str) -> datetime | None:
        found = conn.execute(sa.select(stream_state.c.watermark).where(self._key(account)))
        value = found.scalar()
        return value if isinstance(value, datetime) else None

    def set_watermark(
        self, account: str, value: datetime, *, allow_backwards: bool = False
    ) -> datetime | None:
        """As ``Store.set_watermark``: the watermark now stored, read in the same transaction."""
        statement = self._replace if allow_backwards else self._advance
        with self.store.writing("saving the watermark") as conn:
            conn.execute(
                statement, {"account": account, "watermark": value, "updated_at": self._now()}
            )
            return self._watermark(conn, account)

    def scope(self, account: str) -> tuple[bool, str | None]:
        with self.store.reading("reading the sync scope") as conn:
            row = conn.execute(sa.select(stream_state.c.scope).where(self._key(account))).first()
        return (row is not None, row[0] if row is not None else None)

    def set_scope(self, account: str, scope: str, *, restart: bool) -> None:
        """Record ``scope``; with ``restart``, also drop the watermark, atomically."""
        state: dict[str, Any] = {"scope": scope, "updated_at": self._now()}
        if restart:
            state["watermark"] = None
        with self.store.writing("saving the sync scope") as conn:
            if restart:  # the plan belonged to the old scope too
                conn.execute(sa.delete(sync_slices).where(of_stream(account, self.stream)))
            updated = conn.execute(
                sa.update(stream_state).where(self._key(account)).values(**state)
            )
            if updated.rowcount == 0:
                conn.execute(
                    sa.insert(stream_state).values(account=account, stream=self.stream, **state)
                )

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
        with self.store.stream_transaction(self._upsert, self._advance, self.table) as tx:
            return tx.write_batch(account, run_id, rows, rejects, watermark=watermark)

    @contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        """Consecutive batches of this stream in one transaction (a backfill's writer)."""
        with self.store.stream_transaction(self._upsert, self._advance, self.table) as tx:
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
        self.store.finish_plan(account, watermark, self.stream, self._advance)

    def status(self, account: str) -> StreamStatus:
        with self.store.reading("reading the status") as conn:
            last = runs(conn, account, limit=1, stream=self.stream)
            success = runs(conn, account, limit=1, statuses=["success"], stream=self.stream)
            failure = runs(conn, account, limit=1, statuses=FAILURE_STATUSES, stream=self.stream)
            rows = conn.execute(
                sa.select(sa.func.count())
                .select_from(self.table)
                .where(self.table.c.account == account)
            ).scalar_one()
            rejects = stream_rejects(conn, account, self.stream)
        return StreamStatus(
            account=account,
            stream=self.stream,
            watermark=self.watermark(account),
            rows=int(rows),
            rejects=rejects,
            last_run=last[0] if last else None,
            last_success_at=success[0].finished_at if success else None,
            last_failure_at=(failure[0].finished_at or failure[0].started_at) if failure else None,
            last_failure_error=failure[0].error if failure else None,
        )
