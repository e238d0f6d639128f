"""The store: each batch of pages with its rows, rejects, checkpoints and run counters
committed atomically; consecutive batches may share one transaction (``Store.transaction``).

A batch is written with one dialect-native upsert keyed on ``(account, id)`` that
refuses to rewrite an unchanged row: a record read again unchanged is not written at
all (its ``synced_at`` stays), and the counts of inserted and updated rows are exact on
every dialect. PostgreSQL's upsert counts what it wrote itself; on SQLite and MySQL the
batch's existing ``(id, raw)`` pairs are read first, in the same transaction, and only
new or changed rows are sent.

SQLAlchemy Core, statements built once: the rows and rejects of each batch, then the
checkpoints and counters once per transaction, just before its commit. The row upsert
goes straight to the driver on SQLite (multi-row VALUES, up to 1,000 rows a statement)
and PostgreSQL (one INSERT ... SELECT ... FROM jsonb_array_elements(batch)).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import operator
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.db import database_errors, for_writing, json_text
from etl.lock import run_lock
from etl.records import RAW_JSON
from etl.schema import (
    MYSQL_DIALECTS,
    RUN_KINDS,
    audit_logs,
    audit_rejects,
    sync_runs,
    sync_slices,
    sync_state,
)

FINAL_STATUSES = ("success", "failed", "interrupted")
FAILURE_STATUSES = ("failed", "abandoned")
ABANDONED_ERROR = "the process ended without recording a result (killed, or the host stopped)"
MAX_ERROR_CHARS = 4000
# Ids per "which of these exist?" query; far below every dialect's bound-parameter limit.
_ID_CHUNK = 500
_GAP_FACTOR = 64  # a gap this many times the median one starts a new id range
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
    kind: str = "sync"


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
    ) -> None:
        self._conn = conn
        self._upsert = upsert
        self._advance_watermark = advance_watermark
        self._now = now
        self._account: str | None = None
        self._slices: dict[int, SliceUpdate] = {}  # by id: the latest checkpoint
        self._watermark: datetime | None = None
        self._counts: dict[int, _RunCounts] = {}  # by run id

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
        elif account != self._account:
            raise ValueError(f"write_batch({account!r}) in a transaction of {self._account!r}")
        latest = {row["id"]: row for row in rows}
        if any(row["account"] != account for row in latest.values()):
            raise ValueError(f"write_batch({account!r}) got rows of another account")
        inserted, updated = self._upsert(conn, account, latest) if latest else (0, 0)
        if rejects:
            now = self._now()
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
        self._slices.update((update.id, update) for update in slices)
        if watermark is not None and (self._watermark is None or watermark > self._watermark):
            self._watermark = watermark  # the statement only advances it: the latest wins
        result = WriteResult(inserted, updated, len(rejects))
        self._counts.setdefault(run_id, _RunCounts()).add(result, pages)
        return result

    def finish(self) -> None:
        """Write the checkpoints and counters of every batch (``Store.transaction`` calls
        it just before the commit)."""
        if self._account is None:
            return
        conn, account = self._conn, self._account
        if self._slices:
            _save_slices(conn, account, list(self._slices.values()))
        if self._watermark is not None:
            conn.execute(
                self._advance_watermark,
                {"account": account, "watermark": self._watermark, "updated_at": self._now()},
            )
        for run_id, counts in self._counts.items():
            _count_pages(conn, run_id, counts)


@dataclass
class _RunCounts:
    pages: int = 0
    inserted: int = 0
    updated: int = 0
    rejected: int = 0

    def add(self, result: WriteResult, pages: int) -> None:
        self.pages += pages
        self.inserted += result.inserted
        self.updated += result.updated
        self.rejected += result.rejected


class Store:
    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = utc_now) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql", *MYSQL_DIALECTS):
            raise ValueError(f"unsupported dialect {dialect!r}")  # open_engine refuses it first
        self.engine = engine
        self._writer = for_writing(engine)
        self._now = now
        self._advance_watermark = _state_upsert(dialect, advance_only=True)
        self._replace_watermark = _state_upsert(dialect, advance_only=False)
        # Rows: PostgreSQL's upsert counts what it wrote; SQLite (straight to the driver)
        # and MySQL (SQLAlchemy Core) read the batch's existing rows first.
        self._upsert: RowUpsert
        if dialect == "postgresql":
            self._upsert = _postgresql_upsert
        elif dialect == "sqlite":
            self._upsert = _changed_rows_upsert(_sqlite_existing, _sqlite_rows)
        else:
            self._upsert = _changed_rows_upsert(*_mysql_rows())

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
        with self.transaction() as transaction:
            return transaction.write_batch(account, run_id, rows, rejects, watermark=watermark)

    @contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        """One transaction for consecutive batches (``BatchTransaction.write_batch``): all
        of them commit when the block ends, or none."""
        with self._writing("writing a page") as conn:
            transaction = BatchTransaction(
                conn,
                upsert=self._upsert,
                advance_watermark=self._advance_watermark,
                now=self._now,
            )
            yield transaction
            transaction.finish()

    # -- a parallel backfill's plan ------------------------------------------------------

    def slices(self, account: str) -> list[SliceRow]:
        """The account's backfill plan (empty when none), by start."""
        with self._reading("reading the backfill plan") as conn:
            return _slices(conn, account)

    def add_slices(
        self, account: str, spans: Sequence[tuple[datetime, datetime]]
    ) -> list[SliceRow]:
        """Add slices ``(start, end)`` to the account's plan, committed at once."""
        with self._writing("saving the backfill plan") as conn:
            ids = [_insert_slice(conn, account, start, end) for start, end in spans]
        return [
            SliceRow(i, start, end, None, False) for i, (start, end) in zip(ids, spans, strict=True)
        ]

    def split_slice(
        self, account: str, slice_id: int, new_end: datetime, rest: tuple[datetime, datetime]
    ) -> SliceRow:
        """End slice ``slice_id`` at ``new_end`` and add ``rest`` as a new slice, atomically.

        ``rest`` must start at or before ``new_end``: the two keep covering what the one did,
        so the plan never has a gap, whichever of the two commits a crash leaves behind.
        """
        if rest[0] > new_end:
            raise ValueError("a split must not leave a gap")
        with self._writing("splitting a backfill slice") as conn:
            updated = conn.execute(
                sa.update(sync_slices)
                .where(sync_slices.c.id == slice_id, sync_slices.c.account == account)
                .values(slice_end=new_end)
            )
            if updated.rowcount != 1:
                raise ValueError(f"there is no slice {slice_id} of {account!r}")
            new_id = _insert_slice(conn, account, *rest)
        return SliceRow(new_id, rest[0], rest[1], None, False)

    def finish_plan(self, account: str, watermark: datetime | None) -> None:
        """Delete the account's plan and advance the watermark to its end, atomically."""
        with self._writing("finishing the backfill plan") as conn:
            conn.execute(sa.delete(sync_slices).where(sync_slices.c.account == account))
            if watermark is not None:
                conn.execute(
                    self._advance_watermark,
                    {"account": account, "watermark": watermark, "updated_at": self._now()},
                )

    # -- runs ----------------------------------------------------------------------------

    def start_run(
        self,
        account: str,
        window_start: datetime,
        window_end: datetime,
        watermark_before: datetime | None,
        *,
        kind: str = "sync",
    ) -> int:
        """Record a new run, committed at once. Call it holding the account's lock: runs
        of the account still ``running`` are then known dead and marked ``abandoned``."""
        if kind not in RUN_KINDS:
            raise ValueError(f"a run is one of {', '.join(RUN_KINDS)}, not {kind}")
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
                    kind=kind,
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

    def lock(
        self, account: str, wait: float = 0.0, sleep: Callable[[float], None] = time.sleep
    ) -> AbstractContextManager[None]:
        """The account's run lock; ``LockedError`` if another run holds it past ``wait`` s.
        ``sleep`` spends the pauses between attempts (the CLI's ends at a signal)."""
        return run_lock(self.engine, account, wait, sleep)

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


def _id_ranges(ids: list[Any], size: int) -> Iterator[list[Any]]:
    """Sorted ``ids`` in chunks of at most ``size`` that are each one narrow range.

    A batch may hold pages of distant slices: one chunk spanning them would make the
    ``BETWEEN`` scan everything stored in between. Chunks break at gaps far wider than
    the typical gap between neighbours.
    """
    if len(ids) < 2:
        if ids:
            yield ids
        return
    gaps = sorted(b - a for a, b in itertools.pairwise(ids))
    wide = max(gaps[len(gaps) // 2] * _GAP_FACTOR, 1)
    chunk = [ids[0]]
    for previous, record_id in itertools.pairwise(ids):
        if len(chunk) >= size or record_id - previous > wide:
            yield chunk
            chunk = []
        chunk.append(record_id)
    yield chunk


def _changed_rows_upsert(read: ExistingReader, write: RowWriter) -> RowUpsert:
    """An upsert that first reads the batch's existing ``(id, raw)`` pairs with ``read``,
    then sends only the new or changed rows to ``write``; it says (inserted, updated)."""

    def upsert(
        conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
    ) -> tuple[int, int]:
        existing: dict[Any, Any] = {}
        for chunk in _id_ranges(sorted(rows), _ID_CHUNK):  # each chunk one narrow range
            for record_id, raw in read(conn, account, chunk):
                existing[record_id] = raw
        changed: list[Mapping[str, Any]] = []
        inserted = 0
        for record_id, row in rows.items():
            old = existing.get(record_id, _MISSING)
            if old is _MISSING:
                inserted += 1
                changed.append(row)
            elif old != row["raw"]:
                changed.append(row)
        if changed:
            write(conn, changed)
        return inserted, len(changed) - inserted

    return upsert


def _mysql_rows() -> tuple[ExistingReader, RowWriter]:
    """MySQL's reader and writer of rows, through SQLAlchemy Core (no fast path there)."""
    existing = sa.select(audit_logs.c.id, audit_logs.c.raw).where(
        audit_logs.c.account == sa.bindparam("account"),
        audit_logs.c.id.in_(sa.bindparam("ids", expanding=True)),
        # Redundant, but it keeps the lookup on one narrow range of the primary key
        # whatever the planner's statistics (a new table has none). SQLite's has it too.
        audit_logs.c.id.between(sa.bindparam("lo"), sa.bindparam("hi")),
    )
    upsert = _mysql_rows_upsert()

    def read(conn: Connection, account: str, ids: list[Any]) -> Iterable[Sequence[Any]]:
        params = {"account": account, "ids": ids, "lo": ids[0], "hi": ids[-1]}
        return conn.execute(existing, params)

    def write(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        conn.execute(upsert, [_columns_only(row) for row in rows])

    return read, write


def _mysql_rows_upsert() -> sa.Executable:
    """INSERT ... or update every column but the key, unless ``raw`` is unchanged: the
    one upsert that goes through SQLAlchemy Core (SQLite and PostgreSQL have fast paths)."""
    table = audit_logs
    columns = [c.name for c in table.columns if c.name not in ("account", "id")]
    my = _dialect_insert("mysql", table)
    unchanged = table.c.raw.op("<=>")(my.inserted.raw)
    # MySQL assigns left to right and later expressions see earlier results:
    # raw goes last so that every IF still compares against the old raw.
    assignments: list[tuple[str, Any]] = [
        (name, sa.func.IF(unchanged, table.c[name], my.inserted[name]))
        for name in columns
        if name != "raw"
    ]
    assignments.append(("raw", my.inserted.raw))
    upsert: sa.Executable = my.on_duplicate_key_update(assignments)
    return upsert


# -- the fast row paths ----------------------------------------------------------------------
# SQLite's and PostgreSQL's ``INSERT ... ON CONFLICT DO UPDATE ... WHERE raw changed``, sent
# straight to the driver with values converted here (what UTCDateTime and the JSON type
# would do): SQLAlchemy's per-row parameter processing was the largest cost of a backfill.

_COLUMNS = [c.name for c in audit_logs.columns]
_UPDATED = [name for name in _COLUMNS if name not in ("account", "id")]
_DATETIMES = {"created_at", "synced_at"}
_RAW = _COLUMNS.index("raw")
_COLUMN_LIST = ", ".join(_COLUMNS)
_ROW_VALUES = operator.itemgetter(*_COLUMNS)
_SET_LIST = ", ".join(f"{name} = excluded.{name}" for name in _UPDATED)
# Upserts a batch's rows (by id, deduplicated) and says how many were (inserted, updated).
RowUpsert = Callable[[Connection, str, Mapping[Any, Mapping[str, Any]]], tuple[int, int]]
# The existing (id, raw) pairs among some ids (one narrow range), raw as the JSON type gives it.
ExistingReader = Callable[[Connection, str, list[Any]], Iterable[Sequence[Any]]]
RowWriter = Callable[[Connection, Sequence[Mapping[str, Any]]], None]


@functools.lru_cache(maxsize=64)
def _sqlite_select_existing(ids: int) -> str:
    return (
        "SELECT id, raw FROM zendesk_audit_logs WHERE account = ? "
        f"AND id IN ({', '.join(['?'] * ids)}) AND id BETWEEN ? AND ?"
    )


def _sqlite_existing(conn: Connection, account: str, ids: list[Any]) -> Iterator[tuple[Any, Any]]:
    """MySQL's ``existing`` query (``_mysql_rows``) straight to the driver: SQLAlchemy's
    expanding ``IN`` cost more than the query itself."""
    params = (account, *ids, ids[0], ids[-1])
    for record_id, raw in conn.exec_driver_sql(_sqlite_select_existing(len(ids)), params):
        yield record_id, json.loads(raw)  # what the JSON type would return


def _columns_only(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return {k: v for k, v in row.items() if k != RAW_JSON} if RAW_JSON in row else row


def _utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:  # what parse_record makes
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} refused: give it a timezone")
    return value.astimezone(UTC)


def _sqlite_time(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text for an aware time, as naive UTC."""
    if value.tzinfo is UTC:  # "2024-05-01 12:00:00.000000+00:00" without the offset
        return value.isoformat(" ", "microseconds")[:-6]
    return _utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


# Rows per statement: 15,000 parameters, within SQLite's limit since 3.32 (32,766);
# fewer where an older library allows fewer (``_sqlite_rows_per_statement``).
_SQLITE_ROWS_PER_STATEMENT = 1000


def _iso_time(value: datetime) -> str:
    return _utc(value).isoformat()


class _TimeTexts:
    """A batch's times as text for the driver: ``created_at`` to the second, and the
    ``synced_at`` that a page's rows share, each formatted once for a run of equal ones
    (records often share a second; formatting a datetime costs a microsecond)."""

    def __init__(self, text: Callable[[datetime], str]) -> None:
        self._text = text
        self._created: datetime | None = None
        self._created_text = ""
        self._synced: datetime | None = None
        self._synced_text = ""

    def created(self, moment: datetime) -> str:
        if moment != self._created:
            # parse_record's are whole seconds already
            second = moment.replace(microsecond=0) if moment.microsecond else moment
            self._created, self._created_text = moment, self._text(second)
        return self._created_text

    def synced(self, moment: datetime) -> str:
        if moment is not self._synced:
            self._synced, self._synced_text = moment, self._text(moment)
        return self._synced_text


@functools.cache
def _sqlite_upsert(rows: int) -> str:
    """The upsert of ``rows`` rows in one statement: one step of SQLite for all of them,
    so the GIL is released once per statement rather than once per row."""
    one = f"({', '.join('?' for _ in _COLUMNS)})"
    return (
        f"INSERT INTO zendesk_audit_logs ({_COLUMN_LIST}) VALUES {', '.join([one] * rows)} "
        f"ON CONFLICT (account, id) DO UPDATE SET {_SET_LIST} "
        "WHERE zendesk_audit_logs.raw IS NOT excluded.raw"
    )


def _sqlite_rows_per_statement(driver_connection: Any) -> int:
    limit = int(driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return max(1, min(_SQLITE_ROWS_PER_STATEMENT, limit // len(_COLUMNS)))


def _sqlite_rows(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    created, synced = _COLUMNS.index("created_at"), _COLUMNS.index("synced_at")
    params: list[Any] = []
    width = len(_COLUMNS)
    times = _TimeTexts(_sqlite_time)
    for row in rows:
        at = len(params)
        params.extend(_ROW_VALUES(row))
        params[at + created] = times.created(params[at + created])
        params[at + synced] = times.synced(params[at + synced])
        params[at + _RAW] = _raw_text(row)
    per_statement = _sqlite_rows_per_statement(conn.connection.driver_connection)
    step = per_statement * width
    whole = len(params) - len(params) % step
    if whole:
        statement = _sqlite_upsert(per_statement)
        chunks = [tuple(params[i : i + step]) for i in range(0, whole, step)]
        conn.exec_driver_sql(statement, chunks)
    if whole < len(params):
        rest = tuple(params[whole:])
        conn.exec_driver_sql(_sqlite_upsert(len(rest) // width), rest)


_PG_JSON_COLUMNS = [name for name in _COLUMNS if name != "raw"]
_PG_CASTS = {"id": "bigint", "actor_id": "bigint", "source_id": "bigint"} | {
    name: "timestamptz" for name in _DATETIMES
}
_PG_JSON_UPSERT = (
    "WITH written AS ("
    f"INSERT INTO zendesk_audit_logs ({', '.join(_PG_JSON_COLUMNS)}, raw) SELECT "
    + ", ".join(
        f"(r->>{i})::{_PG_CASTS[name]}" if name in _PG_CASTS else f"r->>{i}"
        for i, name in enumerate(_PG_JSON_COLUMNS)
    )
    + ", raw FROM ROWS FROM (jsonb_array_elements(%s::jsonb), jsonb_array_elements(%s::jsonb))"
    " AS batch (r, raw) "
    f"ON CONFLICT (account, id) DO UPDATE SET {_SET_LIST} "
    "WHERE zendesk_audit_logs.raw IS DISTINCT FROM excluded.raw "
    # An unchanged row is neither written nor returned; xmax is 0 on a new row only.
    # Counted by the server: a row per written row would cost both sides more (7%).
    "RETURNING xmax = 0 AS new) SELECT count(*) FILTER (WHERE new), count(*) FROM written"
)
_PG_VALUES = operator.itemgetter(*_PG_JSON_COLUMNS)
_PG_CREATED = _PG_JSON_COLUMNS.index("created_at")
_PG_SYNCED = _PG_JSON_COLUMNS.index("synced_at")


def _postgresql_upsert(
    conn: Connection, account: str, rows: Mapping[Any, Mapping[str, Any]]
) -> tuple[int, int]:
    """One INSERT ... SELECT ... ON CONFLICT whose rows come as two JSON array parameters,
    zipped by ``ROWS FROM``: the columns (``[account, id, ..., synced_at]`` per row, one
    encoding for the batch) and ``raw`` (the JSON text parse_record made, joined as it is).
    One round trip, no per-row work in the driver, and the statement counts the rows its
    ``RETURNING`` gives (new or changed), where the other dialects first read the rows that
    exist."""
    values: list[list[Any]] = []
    raws: list[str] = []
    times = _TimeTexts(_iso_time)
    for row in rows.values():
        columns = list(_PG_VALUES(row))
        columns[_PG_CREATED] = times.created(columns[_PG_CREATED])
        columns[_PG_SYNCED] = times.synced(columns[_PG_SYNCED])
        values.append(columns)
        raws.append(_raw_text(row))
    # orjson, as for raw: rows hold only text, integers and nulls by now (4x the json module)
    batch = (orjson.dumps(values).decode(), "[" + ",".join(raws) + "]")
    inserted, written = conn.exec_driver_sql(_PG_JSON_UPSERT, batch).one()
    return inserted, written - inserted


def _raw_text(row: Mapping[str, Any]) -> str:
    """``raw`` as the JSON text to store (non-ASCII as UTF-8, like ``parse_record``'s);
    made by ``parse_record`` already, unless it altered the record."""
    text = row.get(RAW_JSON)
    return text if isinstance(text, str) else json_text(row["raw"])


def _state_upsert(dialect: str, *, advance_only: bool) -> sa.Executable:
    """Set an account's watermark (creating its row); if ``advance_only``, never backwards."""
    table = sync_state
    current = table.c.watermark

    def new_value(proposed: Any) -> Any:
        if not advance_only:
            return proposed
        return sa.case((sa.or_(current.is_(None), proposed > current), proposed), else_=current)

    if dialect in ("sqlite", "postgresql"):
        ins = _dialect_insert(dialect, table)
        upsert: sa.Executable = ins.on_conflict_do_update(
            index_elements=[table.c.account],
            set_={
                "watermark": new_value(ins.excluded.watermark),
                "updated_at": ins.excluded.updated_at,
            },
        )
    elif dialect in MYSQL_DIALECTS:
        my = _dialect_insert(dialect, table)
        upsert = my.on_duplicate_key_update(
            [
                ("watermark", new_value(my.inserted.watermark)),
                ("updated_at", my.inserted.updated_at),
            ]
        )
    else:
        raise ValueError(f"unsupported dialect {dialect!r}")
    return upsert


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's own INSERT, with its upsert clause. Its module is imported here, when
    first used, so that a run loads its own dialect alone (each costs 10-25 ms)."""
    name = "mysql" if dialect in MYSQL_DIALECTS else dialect
    return importlib.import_module(f"sqlalchemy.dialects.{name}").insert(table)


def _insert_slice(conn: Connection, account: str, start: datetime, end: datetime) -> int:
    result = conn.execute(
        sa.insert(sync_slices).values(
            account=account, slice_start=start, slice_end=end, position=None, done=False
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


# Built once: these run with every transaction.
_SAVE_SLICE = (
    sa.update(sync_slices)
    .where(
        sync_slices.c.id == sa.bindparam("slice_id"),
        sync_slices.c.account == sa.bindparam("slice_account"),
    )
    .values(position=sa.bindparam("new_position"), done=sa.bindparam("new_done"))
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


def _save_slices(conn: Connection, account: str, slices: Sequence[SliceUpdate]) -> None:
    for update in slices:  # a handful per transaction
        saved = conn.execute(
            _SAVE_SLICE,
            {
                "slice_id": update.id,
                "slice_account": account,
                "new_position": update.position,
                "new_done": update.done,
            },
        )
        if saved.rowcount != 1:  # rolls the transaction back: the plan is not what this run read
            raise ValueError(f"there is no backfill slice {update.id} of {account!r}")


def _slices(conn: Connection, account: str) -> list[SliceRow]:
    table = sync_slices.c
    query = (
        sa.select(table.id, table.slice_start, table.slice_end, table.position, table.done)
        .where(table.account == account)
        .order_by(table.slice_start, table.id)
    )
    return [
        SliceRow(int(i), start, end, position, bool(done))
        for i, start, end, position, done in conn.execute(query)
    ]


def _count_pages(conn: Connection, run_id: int, counts: _RunCounts) -> None:
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
