"""The store: each page's rows, rejects, checkpoint and run counters in one transaction.

A page is written with one dialect-native upsert keyed on ``(account, id)``. Before
it, the page's existing ``(id, raw)`` pairs are read in the same transaction, so the
counts of inserted and updated rows are exact on every dialect and a record read
again unchanged is not written at all (its ``synced_at`` stays). The upsert itself
also refuses to rewrite an unchanged row, in case another writer got there first.

Only SQLAlchemy Core, one statement per kind of work per page, statements built once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from etl.db import database_errors, for_writing
from etl.lock import run_lock
from etl.schema import MYSQL_DIALECTS, audit_logs, audit_rejects, sync_runs, sync_state

FINAL_STATUSES = ("success", "failed", "interrupted")
FAILURE_STATUSES = ("failed", "abandoned")
ABANDONED_ERROR = "the process ended without recording a result (killed, or the host stopped)"
MAX_ERROR_CHARS = 4000
# Ids per "which of these exist?" query; far below every dialect's bound-parameter limit.
_ID_CHUNK = 500
_MISSING = object()


class RejectLike(Protocol):
    """What ``etl.records.Reject`` carries."""

    @property
    def record_id(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def raw(self) -> str: ...


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    updated: int
    rejected: int


@dataclass(frozen=True)
class RunInfo:
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


@dataclass(frozen=True)
class AccountStatus:
    account: str
    watermark: datetime | None
    rows: int  # count(*) over the account's primary-key range: ~100 ms per million on PG
    rejects: int
    last_run: RunInfo | None
    last_success_at: datetime | None  # when the newest successful run finished
    last_failure_at: datetime | None  # the newest failed or abandoned run (finished, or started)
    last_failure_error: str | None


def utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = utc_now) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql", *MYSQL_DIALECTS):
            raise ValueError(f"unsupported dialect {dialect!r}")  # open_engine refuses it first
        self.engine = engine
        self._writer = for_writing(engine)
        self._now = now
        self._upsert_rows = _rows_upsert(dialect)
        self._advance_watermark = _state_upsert(dialect, advance_only=True)
        self._replace_watermark = _state_upsert(dialect, advance_only=False)
        self._existing = sa.select(audit_logs.c.id, audit_logs.c.raw).where(
            audit_logs.c.account == sa.bindparam("account"),
            audit_logs.c.id.in_(sa.bindparam("ids", expanding=True)),
            # Redundant, but it keeps PostgreSQL on the primary key when the table has
            # no statistics yet (new, autovacuum not yet run): without it the planner may
            # scan the account's whole range for every page.
            audit_logs.c.id.between(sa.bindparam("lo"), sa.bindparam("hi")),
        )

    # -- state ---------------------------------------------------------------------------

    def watermark(self, account: str) -> datetime | None:
        with self._reading("reading the watermark") as conn:
            return _watermark(conn, account)

    def set_watermark(
        self, account: str, value: datetime, *, allow_backwards: bool = False
    ) -> None:
        """Move the watermark to ``value``; only forwards unless ``allow_backwards``."""
        statement = self._replace_watermark if allow_backwards else self._advance_watermark
        with self._writing("saving the watermark") as conn:
            conn.execute(
                statement, {"account": account, "watermark": value, "updated_at": self._now()}
            )

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
        latest = {row["id"]: row for row in rows}
        if any(row["account"] != account for row in latest.values()):
            raise ValueError(f"write_page({account!r}) got rows of another account")
        with self._writing("writing a page") as conn:
            existing = self._existing_raw(conn, account, sorted(latest))
            changed: list[Mapping[str, Any]] = []
            inserted = 0
            for record_id, row in latest.items():
                old = existing.get(record_id, _MISSING)
                if old is _MISSING:
                    inserted += 1
                    changed.append(row)
                elif old != row["raw"]:
                    changed.append(row)
            if changed:
                conn.execute(self._upsert_rows, changed)
            now = self._now()
            if rejects:
                conn.execute(
                    audit_rejects.insert(),
                    [
                        {
                            "account": account,
                            "run_id": run_id,
                            "record_id": None if r.record_id is None else r.record_id[:64],
                            "reason": r.reason,
                            "raw": r.raw,
                            "rejected_at": now,
                        }
                        for r in rejects
                    ],
                )
            if watermark is not None:
                conn.execute(
                    self._advance_watermark,
                    {"account": account, "watermark": watermark, "updated_at": now},
                )
            result = WriteResult(inserted, len(changed) - inserted, len(rejects))
            _count_page(conn, run_id, result)
        return result

    def _existing_raw(self, conn: Connection, account: str, ids: list[Any]) -> dict[Any, Any]:
        """``{id: raw}`` of the rows among ``ids`` (sorted: each chunk is one narrow range)."""
        existing: dict[Any, Any] = {}
        for chunk in _chunks(ids, _ID_CHUNK):
            params = {"account": account, "ids": chunk, "lo": min(chunk), "hi": max(chunk)}
            result = conn.execute(self._existing, params)
            for record_id, raw in result:
                existing[record_id] = raw
        return existing

    # -- runs ----------------------------------------------------------------------------

    def start_run(
        self,
        account: str,
        window_start: datetime,
        window_end: datetime,
        watermark_before: datetime | None,
    ) -> int:
        """Record a new run, committed at once. Call it holding the account's lock: runs
        of the account still ``running`` are then known dead and marked ``abandoned``."""
        with self._writing("starting a run") as conn:
            conn.execute(
                sa.update(sync_runs)
                .where(sync_runs.c.account == account, sync_runs.c.status == "running")
                .values(status="abandoned", error=ABANDONED_ERROR)
            )
            result = conn.execute(
                sa.insert(sync_runs).values(
                    account=account,
                    started_at=self._now(),
                    status="running",
                    window_start=window_start,
                    window_end=window_end,
                    watermark_before=watermark_before,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        watermark_after: datetime | None,
        requests: int,
        rate_limited: int,
        error: str | None = None,
    ) -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"a run finishes as one of {', '.join(FINAL_STATUSES)}, not {status}")
        with self._writing("recording the end of a run") as conn:
            conn.execute(
                sa.update(sync_runs)
                .where(sync_runs.c.id == run_id)
                .values(
                    status=status,
                    finished_at=self._now(),
                    watermark_after=watermark_after,
                    requests=requests,
                    rate_limited=rate_limited,
                    error=None if error is None else error[:MAX_ERROR_CHARS],
                )
            )

    def recent_runs(self, account: str, limit: int = 5) -> list[RunInfo]:
        """The account's newest runs, newest first."""
        with self._reading("reading the run history") as conn:
            return _runs(conn, account, limit=limit)

    # -- status --------------------------------------------------------------------------

    def account_status(self, account: str | None = None) -> list[AccountStatus]:
        """One entry per account (or just ``account``), sorted by name.

        Accounts are those with a watermark or a run; asking for an unknown account
        gives an entry with nothing in it.
        """
        with self._reading("reading the status") as conn:
            if account is None:
                names = sorted(
                    set(conn.execute(sa.select(sync_state.c.account)).scalars())
                    | set(conn.execute(sa.select(sync_runs.c.account).distinct()).scalars())
                )
            else:
                names = [account]
            return [_account_status(conn, name) for name in names]

    # -- locks ---------------------------------------------------------------------------

    def lock(self, account: str, wait: float = 0.0) -> AbstractContextManager[None]:
        """The account's run lock; ``LockedError`` if another run holds it past ``wait`` s."""
        return run_lock(self.engine, account, wait)

    # -- plumbing ------------------------------------------------------------------------

    def _reading(self, doing: str) -> AbstractContextManager[Connection]:
        return _transaction(self.engine, self.engine, doing)

    def _writing(self, doing: str) -> AbstractContextManager[Connection]:
        return _transaction(self._writer, self.engine, doing)


@contextmanager
def _transaction(engine: Engine, described: Engine, doing: str) -> Iterator[Connection]:
    """A transaction on ``engine`` whose database failures become ``DatabaseError``."""
    with database_errors(described, doing), engine.begin() as conn:
        yield conn


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _rows_upsert(dialect: str) -> sa.Executable:
    """INSERT ... or update every column but the key, unless ``raw`` is unchanged."""
    table = audit_logs
    columns = [c.name for c in table.columns if c.name not in ("account", "id")]
    if dialect == "sqlite":
        lite = sqlite.insert(table)
        return lite.on_conflict_do_update(
            index_elements=[table.c.account, table.c.id],
            set_={name: lite.excluded[name] for name in columns},
            where=table.c.raw.is_distinct_from(lite.excluded.raw),
        )
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(
            index_elements=[table.c.account, table.c.id],
            set_={name: pg.excluded[name] for name in columns},
            where=table.c.raw.is_distinct_from(pg.excluded.raw),
        )
    if dialect in MYSQL_DIALECTS:
        my = mysql.insert(table)
        unchanged = table.c.raw.op("<=>")(my.inserted.raw)
        # MySQL assigns left to right and later expressions see earlier results:
        # raw goes last so that every IF still compares against the old raw.
        assignments: list[tuple[str, Any]] = [
            (name, sa.func.IF(unchanged, table.c[name], my.inserted[name]))
            for name in columns
            if name != "raw"
        ]
        assignments.append(("raw", my.inserted.raw))
        return my.on_duplicate_key_update(assignments)
    raise ValueError(f"unsupported dialect {dialect!r}")


def _state_upsert(dialect: str, *, advance_only: bool) -> sa.Executable:
    """Set an account's watermark (creating its row); if ``advance_only``, never backwards."""
    table = sync_state
    current = table.c.watermark

    def new_value(proposed: Any) -> Any:
        if not advance_only:
            return proposed
        return sa.case((sa.or_(current.is_(None), proposed > current), proposed), else_=current)

    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        ins = dialect_insert(table)
        return ins.on_conflict_do_update(
            index_elements=[table.c.account],
            set_={
                "watermark": new_value(ins.excluded.watermark),
                "updated_at": ins.excluded.updated_at,
            },
        )
    if dialect in MYSQL_DIALECTS:
        my = mysql.insert(table)
        return my.on_duplicate_key_update(
            [
                ("watermark", new_value(my.inserted.watermark)),
                ("updated_at", my.inserted.updated_at),
            ]
        )
    raise ValueError(f"unsupported dialect {dialect!r}")


def _count_page(conn: Connection, run_id: int, result: WriteResult) -> None:
    runs = sync_runs.c
    counted = conn.execute(
        sa.update(sync_runs)
        .where(runs.id == run_id)
        .values(
            pages=runs.pages + 1,
            rows_inserted=runs.rows_inserted + result.inserted,
            rows_updated=runs.rows_updated + result.updated,
            rows_rejected=runs.rows_rejected + result.rejected,
        )
    )
    if counted.rowcount != 1:  # rolls the page back: pages belong to a run
        raise ValueError(f"there is no run {run_id}")


def _watermark(conn: Connection, account: str) -> datetime | None:
    value = conn.execute(
        sa.select(sync_state.c.watermark).where(sync_state.c.account == account)
    ).scalar()
    return value if isinstance(value, datetime) else None


def _runs(
    conn: Connection, account: str, *, limit: int, statuses: Sequence[str] | None = None
) -> list[RunInfo]:
    query = sa.select(sync_runs).where(sync_runs.c.account == account)
    if statuses is not None:
        query = query.where(sync_runs.c.status.in_(statuses))
    query = query.order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc()).limit(limit)
    return [RunInfo(**row) for row in conn.execute(query).mappings()]


def _count(conn: Connection, table: sa.Table, account: str) -> int:
    query = sa.select(sa.func.count()).select_from(table).where(table.c.account == account)
    return int(conn.execute(query).scalar_one())


def _account_status(conn: Connection, account: str) -> AccountStatus:
    last = _runs(conn, account, limit=1)
    success = _runs(conn, account, limit=1, statuses=["success"])
    failure = _runs(conn, account, limit=1, statuses=FAILURE_STATUSES)
    return AccountStatus(
        account=account,
        watermark=_watermark(conn, account),
        rows=_count(conn, audit_logs, account),
        rejects=_count(conn, audit_rejects, account),
        last_run=last[0] if last else None,
        last_success_at=success[0].finished_at if success else None,
        last_failure_at=(failure[0].finished_at or failure[0].started_at) if failure else None,
        last_failure_error=failure[0].error if failure else None,
    )
