"""The run history: each run's row (started, counted, finished, or found abandoned) and
the account status read from the runs and the state.

A run's counters are added once a transaction, just before its commit
(``BatchTransaction.finish``); ``Store`` opens and closes the row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.common.settings import AUDIT_LOGS
from etl.storage.schema.logs import audit_logs
from etl.storage.schema.state import RUN_KINDS, audit_rejects, sync_runs, sync_state
from etl.storage.statements import WriteResult, scope, watermark

FAILURE_STATUSES = ("failed", "abandoned")
FINAL_STATUSES = ("success", "failed", "interrupted")
ABANDONED_ERROR = "the process ended without recording a result (killed, or the host stopped)"
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class RunInfo:
    """One row of the runs table, as status shows it."""

    id: int
    account: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    watermark_before: datetime | None
    watermark_after: datetime | None
    pages: int
    requests: int
    rate_limited: int
    rows_inserted: int
    rows_updated: int
    rows_rejected: int
    error: str | None
    kind: str = "sync"
    stream: str = "audit_logs"


@dataclass(frozen=True)
class AccountStatus:
    """How fresh an account's stored data is: its watermark, rows, last runs."""

    account: str
    watermark: datetime | None
    rows: int  # count(*) over the account's primary-key range: ~100 ms per million on PG
    rejects: int
    last_run: RunInfo | None
    last_success_at: datetime | None  # when the newest successful run finished
    last_failure_at: datetime | None  # the newest failed or abandoned run (finished, or started)
    last_failure_error: str | None
    scope: str | None = None  # the filters and start_time the watermark belongs to
    stream: str = AUDIT_LOGS  # the log this is the status of


@dataclass
class RunCounts:
    """What a run has written so far: pages and rows, as its row counts them."""

    pages: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0

    def add(self, result: WriteResult, pages: int) -> None:
        self.pages += pages
        self.inserted += result.inserted
        self.updated += result.updated
        self.rejected += result.rejected


def start_run(
    conn: Connection,
    account: str,
    window: tuple[datetime, datetime],
    watermark_before: datetime | None,
    *,
    kind: str,
    now: datetime,
    stream: str = "audit_logs",
) -> int:
    """Insert a new run's row (``kind`` checked by ``check_kind``); the account's runs still
    ``running`` are marked ``abandoned`` (the caller holds the account's lock: they are dead)."""
    conn.execute(
        sa.update(sync_runs)
        .where(sync_runs.c.account == account, sync_runs.c.status == "running")
        .values(status="abandoned", error=ABANDONED_ERROR)
    )
    result = conn.execute(
        sa.insert(sync_runs).values(
            account=account,
            started_at=now,
            status="running",
            window_start=window[0],
            window_end=window[1],
            watermark_before=watermark_before,
            kind=kind,
            stream=stream,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def check_kind(kind: str) -> None:
    if kind not in RUN_KINDS:
        raise ValueError(f"a run is one of {', '.join(RUN_KINDS)}, not {kind}")


def check_final(status: str) -> None:
    if status not in FINAL_STATUSES:
        raise ValueError(f"a run finishes as one of {', '.join(FINAL_STATUSES)}, not {status}")


def finish_run(
    conn: Connection,
    run_id: int,
    status: str,
    *,
    now: datetime,
    watermark_after: datetime | None,
    requests: int,
    rate_limited: int,
    error: str | None,
    add_pages: int = 0,
) -> None:
    """Close run ``run_id``'s row with its result (``status`` checked by ``check_final``;
    ``error`` cut to ``MAX_ERROR_CHARS``); ``add_pages``: pages read but not committed
    (re-read unchanged), counted now."""
    conn.execute(
        sa.update(sync_runs)
        .where(sync_runs.c.id == run_id)
        .values(
            pages=sync_runs.c.pages + add_pages,
            status=status,
            finished_at=now,
            watermark_after=watermark_after,
            requests=requests,
            rate_limited=rate_limited,
            error=None if error is None else error[:MAX_ERROR_CHARS],
        )
    )


_COUNT_PAGES = (
    sa.update(sync_runs)
    .where(sync_runs.c.id == sa.bindparam("run_id"))
    .values(
        pages=sync_runs.c.pages + sa.bindparam("add_pages"),
        rows_inserted=sync_runs.c.rows_inserted + sa.bindparam("add_inserted"),
        rows_updated=sync_runs.c.rows_updated + sa.bindparam("add_updated"),
        rows_rejected=sync_runs.c.rows_rejected + sa.bindparam("add_rejected"),
    )
)


def count_pages(conn: Connection, run_id: int, counts: RunCounts) -> None:
    counted = conn.execute(
        _COUNT_PAGES,
        {
            "run_id": run_id,
            "add_pages": counts.pages,
            "add_inserted": counts.inserted,
            "add_updated": counts.updated,
            "add_rejected": counts.rejected,
        },
    )
    if counted.rowcount != 1:  # rolls the transaction back: pages belong to a run
        raise ValueError(f"there is no run {run_id}")


def runs(
    conn: Connection,
    account: str,
    *,
    limit: int,
    statuses: Sequence[str] | None = None,
    stream: str = "audit_logs",
) -> list[RunInfo]:
    query = sa.select(sync_runs).where(sync_runs.c.account == account, sync_runs.c.stream == stream)
    if statuses is not None:
        query = query.where(sync_runs.c.status.in_(statuses))
    query = query.order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc()).limit(limit)
    return [RunInfo(**row) for row in conn.execute(query).mappings()]


def count(conn: Connection, table: sa.Table, account: str) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.c.account == account)
    return int(conn.execute(query).scalar_one())


def newest(conn: Connection, table: sa.Table, column: str, account: str) -> datetime | None:
    """The newest ``column`` stored for the account in ``table`` (None when it has no row)."""
    query = sa.select(sa.func.max(table.c[column])).where(table.c.account == account)
    value = conn.execute(query).scalar()
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def stream_rejects(conn: Connection, account: str, stream: str) -> int:
    """The account's rejects of runs that read ``stream``."""
    query = (
        sa.select(sa.func.count())
        .select_from(audit_rejects.join(sync_runs, audit_rejects.c.run_id == sync_runs.c.id))
        .where(audit_rejects.c.account == account, sync_runs.c.stream == stream)
    )
    return int(conn.execute(query).scalar_one())


def account_status(
    conn: Connection, account: str, stream: str = AUDIT_LOGS, table: sa.Table = audit_logs
) -> AccountStatus:
    """The account's status in ``stream``, whose rows are in ``table``."""
    last = runs(conn, account, limit=1, stream=stream)
    success = runs(conn, account, limit=1, statuses=["success"], stream=stream)
    failure = runs(conn, account, limit=1, statuses=FAILURE_STATUSES, stream=stream)
    return AccountStatus(
        account=account,
        watermark=watermark(conn, account, stream),
        rows=count(conn, table, account),
        rejects=stream_rejects(conn, account, stream),
        last_run=last[0] if last else None,
        last_success_at=success[0].finished_at if success else None,
        last_failure_at=(failure[0].finished_at or failure[0].started_at) if failure else None,
        last_failure_error=failure[0].error if failure else None,
        scope=scope(conn, account, stream)[1],
        stream=stream,
    )


def account_names(conn: Connection) -> list[str]:
    """The accounts with a watermark or a run, sorted."""
    return sorted(
        set(conn.execute(sa.select(sync_state.c.account)).scalars())
        | set(conn.execute(sa.select(sync_runs.c.account).distinct()).scalars())
    )
