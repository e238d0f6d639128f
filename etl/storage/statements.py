"""The state and backfill-plan statements, and the rows they read.

Checkpoints (slices, watermark) are written once a transaction, just before its commit
(``BatchTransaction.finish``); so are the run's counters (``etl.storage.history``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.common.settings import AUDIT_LOGS
from etl.storage.schema.coltypes import MYSQL_DIALECTS, dialect_insert
from etl.storage.schema.state import stream_state, sync_slices, sync_state


@dataclass(frozen=True)
class WriteResult:
    """Rows a page's write inserted, updated and rejected."""

    inserted: int
    updated: int
    rejected: int


@dataclass(frozen=True)
class SliceRow:
    """One slice of a parallel backfill's plan, as stored."""

    id: int
    start: datetime
    end: datetime
    position: datetime | None  # the newest created_at committed in the slice
    done: bool


@dataclass(frozen=True)
class SliceUpdate:
    """A slice's checkpoint, committed with the rows that move it."""

    id: int
    position: datetime | None
    done: bool
    end: datetime | None = None  # moved down to what a downward reader left unproven


@functools.cache  # built once for each kind, stream and direction, whoever asks
def state_upsert(dialect: str, stream: str = AUDIT_LOGS, *, advance_only: bool) -> sa.Executable:
    """Set an account's watermark of ``stream`` (creating its state row, ``state_row``); if
    ``advance_only``, never backwards. Executed with ``account``, ``watermark``, ``updated_at``."""
    table, key = state_row(stream)
    current = table.c.watermark
    values: dict[str, Any] = {
        "account": sa.bindparam("account"),
        **{name: sa.literal(value) for name, value in key.items()},
        "watermark": sa.bindparam("watermark"),
        "updated_at": sa.bindparam("updated_at"),
    }

    def new_value(proposed: Any) -> Any:
        if not advance_only:
            return proposed
        return sa.case((sa.or_(current.is_(None), proposed > current), proposed), else_=current)

    if dialect in ("sqlite", "postgresql"):
        ins = dialect_insert(dialect, table).values(**values)
        upsert: sa.Executable = ins.on_conflict_do_update(
            index_elements=[table.c.account, *(table.c[name] for name in key)],
            set_={
                "watermark": new_value(ins.excluded.watermark),
                "updated_at": ins.excluded.updated_at,
            },
        )
    elif dialect in MYSQL_DIALECTS:
        my = dialect_insert(dialect, table).values(**values)
        upsert = my.on_duplicate_key_update(
            [
                ("watermark", new_value(my.inserted.watermark)),
                ("updated_at", my.inserted.updated_at),
            ]
        )
    else:
        raise ValueError(f"unsupported dialect {dialect!r}")
    return upsert


def insert_slice(
    conn: Connection, account: str, start: datetime, end: datetime, stream: str = AUDIT_LOGS
) -> int:
    result = conn.execute(
        sa.insert(sync_slices).values(
            account=account, stream=stream, slice_start=start, slice_end=end, done=False
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


# Built once: it runs with every transaction.
_SAVE_SLICE = (
    sa.update(sync_slices)
    .where(
        sync_slices.c.id == sa.bindparam("slice_id"),
        sync_slices.c.account == sa.bindparam("slice_account"),
    )
    .values(
        position=sa.bindparam("new_position"),
        done=sa.bindparam("new_done"),
        slice_end=sa.func.coalesce(
            sa.bindparam("new_end", type_=sync_slices.c.slice_end.type), sync_slices.c.slice_end
        ),
    )
)


def save_slices(conn: Connection, account: str, slices: Sequence[SliceUpdate]) -> None:
    for update in slices:  # a handful per transaction
        saved = conn.execute(
            _SAVE_SLICE,
            {
                "slice_id": update.id,
                "slice_account": account,
                "new_position": update.position,
                "new_done": update.done,
                "new_end": update.end,
            },
        )
        if saved.rowcount != 1:  # rolls the transaction back: the plan is not what this run read
            raise ValueError(f"there is no backfill slice {update.id} of {account!r}")


def split_slice(
    conn: Connection,
    account: str,
    slice_id: int,
    new_end: datetime,
    rest: tuple[datetime, datetime],
    stream: str,
) -> SliceRow:
    """End slice ``slice_id`` at ``new_end``, and ``rest`` a new slice of the plan."""
    updated = conn.execute(
        sa.update(sync_slices)
        .where(sync_slices.c.id == slice_id, sync_slices.c.account == account)
        .values(slice_end=new_end)
    )
    if updated.rowcount != 1:
        raise ValueError(f"there is no slice {slice_id} of {account!r}")
    new_id = insert_slice(conn, account, *rest, stream)
    return SliceRow(new_id, rest[0], rest[1], None, False)


def of_stream(account: str, stream: str) -> sa.ColumnElement[bool]:
    """The slices of one plan: an account's, for one log."""
    return sa.and_(sync_slices.c.account == account, sync_slices.c.stream == stream)


def slices(conn: Connection, account: str, stream: str = AUDIT_LOGS) -> list[SliceRow]:
    table = sync_slices.c
    query = (
        sa.select(table.id, table.slice_start, table.slice_end, table.position, table.done)
        .where(of_stream(account, stream))
        .order_by(table.slice_start, table.id)
    )
    return [
        SliceRow(int(i), start, end, position, bool(done))
        for i, start, end, position, done in conn.execute(query)
    ]


def state_row(stream: str) -> tuple[sa.Table, dict[str, str]]:
    """Where an account's state of ``stream`` is kept: the table, and its key besides the
    account. The audit log's in ``zendesk_audit_sync_state`` (keyed by account), any other
    log's in ``zendesk_stream_state`` (keyed by account and stream)."""
    if stream == AUDIT_LOGS:
        return sync_state, {}
    return stream_state, {"stream": stream}


def _where(table: sa.Table, account: str, key: dict[str, str]) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.account == account, *(table.c[k] == v for k, v in key.items()))


def watermark(conn: Connection, account: str, stream: str = AUDIT_LOGS) -> datetime | None:
    table, key = state_row(stream)
    value = conn.execute(sa.select(table.c.watermark).where(_where(table, account, key))).scalar()
    return value if isinstance(value, datetime) else None


def scope(conn: Connection, account: str, stream: str = AUDIT_LOGS) -> tuple[bool, str | None]:
    """Whether the account has a state row for ``stream``, and the scope recorded in it."""
    table, key = state_row(stream)
    row = conn.execute(sa.select(table.c.scope).where(_where(table, account, key))).first()
    return (row is not None, row[0] if row is not None else None)


def scope_and_watermark(
    conn: Connection, account: str, stream: str = AUDIT_LOGS
) -> tuple[bool, str | None, datetime | None]:
    """``scope`` and ``watermark`` in one statement: a run reads both as it begins."""
    table, key = state_row(stream)
    query = sa.select(table.c.scope, table.c.watermark).where(_where(table, account, key))
    row = conn.execute(query).first()
    if row is None:
        return (False, None, None)
    value = row[1]
    return (True, row[0], value if isinstance(value, datetime) else None)


def set_scope(
    conn: Connection,
    account: str,
    scope: str,
    now: datetime,
    *,
    restart: bool,
    stream: str = AUDIT_LOGS,
) -> None:
    """Record ``scope`` in the account's state row of ``stream`` (created if none); with
    ``restart``, also drop the watermark and that log's backfill plan."""
    table, key = state_row(stream)
    state: dict[str, Any] = {"scope": scope, "updated_at": now}
    if restart:  # the plan belonged to the old scope too
        conn.execute(sa.delete(sync_slices).where(of_stream(account, stream)))
        state["watermark"] = None
    updated = conn.execute(sa.update(table).where(_where(table, account, key)).values(**state))
    if updated.rowcount == 0:
        conn.execute(sa.insert(table).values(account=account, **key, **state))


def finish_plan(
    conn: Connection,
    account: str,
    stream: str,
    watermark: datetime | None,
    now: datetime,
) -> None:
    """Delete the plan of ``stream``, and advance its watermark to the plan's end
    (``watermark``, when not None)."""
    conn.execute(sa.delete(sync_slices).where(of_stream(account, stream)))
    if watermark is not None:
        advance = state_upsert(conn.dialect.name, stream, advance_only=True)
        conn.execute(advance, {"account": account, "watermark": watermark, "updated_at": now})


def claim_notice(
    conn: Connection, account: str, notice: str, now: datetime, every: timedelta
) -> bool:
    """Whether ``notice`` is due for ``account`` (never said, another notice said last,
    or said ``every`` ago or longer); if so, it is recorded as said ``now``. Called
    under the account's run lock, so two runs never both find it due."""
    row = conn.execute(
        sa.select(sync_state.c.notice, sync_state.c.notice_at).where(
            sync_state.c.account == account
        )
    ).first()
    said_at = row.notice_at if row is not None and row.notice == notice else None
    if said_at is not None and now - said_at < every:
        return False
    said = {"notice": notice, "notice_at": now}
    if row is None:
        conn.execute(sa.insert(sync_state).values(account=account, updated_at=now, **said))
    else:
        conn.execute(sa.update(sync_state).where(sync_state.c.account == account).values(**said))
    return True
