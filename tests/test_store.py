"""The store and the engine setup, on a real database of each kind (see conftest.db_url)."""

from __future__ import annotations

import os
import re
import stat
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.clock import TickingWallClock
from sqlalchemy.engine import Engine, make_url

from etl.common.errors import ConfigError, DatabaseError
from etl.records.audit import parse_record
from etl.storage import migrate
from etl.storage.engine import check_connection, open_engine, parse_url
from etl.storage.schema.logs import audit_logs
from etl.storage.schema.state import audit_rejects, stream_state, sync_runs
from etl.storage.store import SliceUpdate, Store
from etl.storage.streams import StreamStore
from etl.sync.streams import ACCESS_LOGS

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ACCOUNT = "acme"


@dataclass(frozen=True)
class FakeReject:
    record_id: str | None
    reason: str
    raw: str


@pytest.fixture
def engine(migrated_engine: Engine) -> Engine:
    return migrated_engine


@pytest.fixture
def clock() -> TickingWallClock:
    return TickingWallClock()


@pytest.fixture
def store(engine: Engine, clock: TickingWallClock) -> Store:
    return Store(engine, now=clock)


def row(
    record_id: int, *, version: int = 0, synced_at: datetime = T0, **fields: Any
) -> dict[str, Any]:
    created_at = fields.pop("created_at", T0 + timedelta(seconds=record_id % 100_000))
    raw = {
        "id": record_id,
        "action": "update",
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "version": version,
        "actor_name": "Zoë ✓",
    }
    base: dict[str, Any] = {
        "account": ACCOUNT,
        "id": record_id,
        "action": "update",
        "action_label": "Updated",
        "actor_id": -1,
        "actor_name": "Zoë ✓",
        "change_description": f"version {version}",
        "created_at": created_at,
        "ip_address": None,
        "source_id": 6139157572367,
        "source_label": "Some rule",
        "source_type": "rule",
        "url": f"https://acme.zendesk.com/api/v2/audit_logs/{record_id}.json",
        "raw": raw,
        "synced_at": synced_at,
    }
    base.update(fields)
    return base


def start(store: Store, account: str = ACCOUNT) -> int:
    return store.start_run(account, T0 - timedelta(days=1), T0 + timedelta(days=1), None)


def stored(engine: Engine, account: str = ACCOUNT) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        query = sa.select(audit_logs).where(audit_logs.c.account == account)
        return {r["id"]: dict(r) for r in conn.execute(query).mappings()}


def run_row(engine: Engine, run_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        found = conn.execute(sa.select(sync_runs).where(sync_runs.c.id == run_id)).mappings()
        return dict(found.one())


# -- write_page ------------------------------------------------------------------------


def test_counts_new_changed_and_unchanged_rows_exactly(store: Store, engine: Engine) -> None:
    run_id = start(store)
    assert store.write_page(ACCOUNT, run_id, [row(1), row(2)], [], None).inserted == 2

    result = store.write_page(ACCOUNT, run_id, [row(1), row(2, version=1), row(3)], [], None)
    assert (result.inserted, result.updated, result.rejected) == (1, 1, 0)

    result = store.write_page(ACCOUNT, run_id, [row(1), row(2, version=1), row(3)], [], None)
    assert (result.inserted, result.updated, result.rejected) == (0, 0, 0)

    rows = stored(engine)
    assert sorted(rows) == [1, 2, 3]
    assert rows[2]["raw"]["version"] == 1
    assert rows[2]["change_description"] == "version 1"


def test_same_id_twice_in_a_page_keeps_the_last(store: Store, engine: Engine) -> None:
    run_id = start(store)
    result = store.write_page(ACCOUNT, run_id, [row(7), row(8), row(7, version=2)], [], None)
    assert (result.inserted, result.updated) == (2, 0)
    result = store.write_page(
        ACCOUNT, run_id, [row(7, version=3), row(7, version=4), row(8)], [], None
    )
    assert (result.inserted, result.updated) == (0, 1)
    assert stored(engine)[7]["raw"]["version"] == 4


def test_unchanged_reread_leaves_synced_at_alone(store: Store, engine: Engine) -> None:
    run_id = start(store)
    first = T0 + timedelta(hours=1)
    store.write_page(ACCOUNT, run_id, [row(1, synced_at=first), row(2, synced_at=first)], [], None)
    later = first + timedelta(hours=1)
    store.write_page(
        ACCOUNT, run_id, [row(1, synced_at=later), row(2, version=9, synced_at=later)], [], None
    )
    rows = stored(engine)
    assert rows[1]["synced_at"] == first
    assert rows[2]["synced_at"] == later


def test_same_id_in_two_accounts_is_two_rows(store: Store, engine: Engine) -> None:
    run_a, run_b = start(store, "a"), start(store, "b")
    assert store.write_page("a", run_a, [row(1, account="a")], [], None).inserted == 1
    assert store.write_page("b", run_b, [row(1, account="b")], [], None).inserted == 1
    assert list(stored(engine, "a")) == list(stored(engine, "b")) == [1]


def test_rows_of_another_account_are_refused(store: Store) -> None:
    run_id = start(store)
    with pytest.raises(ValueError, match="another account"):
        store.write_page(ACCOUNT, run_id, [row(1, account="other")], [], None)


def test_datetimes_come_back_aware_utc(store: Store, engine: Engine) -> None:
    run_id = start(store)
    plus_two = timezone(timedelta(hours=2))
    created = datetime(2024, 5, 1, 14, 30, 15, 987654, tzinfo=plus_two)
    synced = datetime(2024, 5, 2, 8, 0, 1, 123456, tzinfo=UTC)
    store.write_page(ACCOUNT, run_id, [row(1, created_at=created, synced_at=synced)], [], created)
    back = stored(engine)[1]
    assert back["created_at"] == created.replace(microsecond=0)  # whole seconds, by design
    assert back["created_at"].tzinfo is UTC
    assert back["created_at"].hour == 12
    assert back["synced_at"] == synced
    assert back["synced_at"].tzinfo is UTC
    watermark = store.watermark(ACCOUNT)
    assert watermark == created and watermark is not None and watermark.tzinfo is UTC


@pytest.mark.parametrize(
    ("created", "synced"),
    [
        (T0, T0.replace(microsecond=654321)),
        # UTC with a fraction: cut to the second as UTCDateTime cuts it, not rounded
        (T0.replace(microsecond=987654), T0.replace(microsecond=987654)),
        (T0, datetime(2024, 5, 2, 3, 0, 1, 123456, tzinfo=timezone(timedelta(hours=-5)))),
        (
            datetime(2024, 5, 1, 14, 30, 15, 987654, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 2, 3, 0, 1, 123456, tzinfo=timezone(timedelta(hours=-5))),
        ),
    ],
    ids=["utc", "utc-fraction", "synced-offset", "offsets"],
)
def test_the_fast_path_and_core_store_the_same_times(
    store: Store, engine: Engine, created: datetime, synced: datetime
) -> None:
    """SQLite's and PostgreSQL's straight-to-driver upserts store what UTCDateTime would."""
    run_id = start(store)
    store.write_page(ACCOUNT, run_id, [row(1, created_at=created, synced_at=synced)], [], None)
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_logs), row(2, created_at=created, synced_at=synced))
    # Untyped columns: the values as the database gives them, no UTCDateTime on the way back.
    plain = sa.table(audit_logs.name, *(sa.column(c) for c in ("id", "created_at", "synced_at")))
    with engine.connect() as conn:
        found = {i: (c, s) for i, c, s in conn.execute(sa.select(plain).order_by(plain.c.id))}
    assert found[1] == found[2]
    back = stored(engine)
    assert back[1]["created_at"] == back[2]["created_at"] == created.replace(microsecond=0)
    assert back[1]["synced_at"] == back[2]["synced_at"] == synced


@pytest.mark.parametrize("column", ["created_at", "synced_at"])
def test_naive_datetimes_are_refused(store: Store, column: str) -> None:
    run_id = start(store)
    naive = datetime(2024, 5, 1, 12, 0, 0)
    with pytest.raises((sa.exc.StatementError, ValueError), match="naive datetime"):
        bad = row(1, created_at=naive) if column == "created_at" else row(1, synced_at=naive)
        store.write_page(ACCOUNT, run_id, [bad], [], None)


def test_unicode_and_big_integers_survive(store: Store, engine: Engine) -> None:
    run_id = start(store)
    big = 2**63 - 1
    store.write_page(ACCOUNT, run_id, [row(big, actor_name="😀 Zoë", source_id=-(2**63))], [], None)
    back = stored(engine)[big]
    assert back["actor_name"] == "😀 Zoë"
    assert back["source_id"] == -(2**63)
    assert back["raw"]["actor_name"] == "Zoë ✓"


def test_a_failed_page_leaves_nothing_behind(store: Store, engine: Engine) -> None:
    run_id = start(store)
    store.write_page(ACCOUNT, run_id, [row(1)], [], T0)
    with pytest.raises(ValueError, match="no run"):
        store.write_page(ACCOUNT, run_id + 100, [row(2)], [], T0 + timedelta(days=1))
    assert list(stored(engine)) == [1]
    assert store.watermark(ACCOUNT) == T0


def test_a_transaction_writes_its_checkpoints_and_counters_once(
    store: Store, engine: Engine
) -> None:
    """Batches sharing a transaction each write their rows; the slices, the watermark and
    the run's counters are written once, with their final values, before the commit."""
    run_id = start(store)
    first, second = store.add_slices(ACCOUNT, [(T0, T0 + timedelta(hours=1))] * 2)
    state_writes: list[str] = []  # the tables of the statements that write state

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        written = re.match(r"\s*(?:UPDATE|INSERT INTO)\s+(zendesk_audit_sync_\w+)", statement)
        if written:
            state_writes.append(written[1])

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with store.transaction() as transaction:
            for n, (slices, watermark) in enumerate(
                [
                    ([SliceUpdate(first.id, T0 + timedelta(minutes=1), False)], T0),
                    ([SliceUpdate(first.id, T0 + timedelta(minutes=2), True)], None),
                    (
                        [SliceUpdate(second.id, T0 + timedelta(minutes=3), False)],
                        T0 + timedelta(minutes=2),
                    ),
                ]
            ):
                rows = [row(10 * n + 1), row(10 * n + 2)]
                transaction.write_batch(
                    ACCOUNT, run_id, rows, [], pages=2, watermark=watermark, slices=slices
                )
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert sorted(state_writes) == sorted(
        ["zendesk_audit_sync_slices"] * 2 + ["zendesk_audit_sync_state", "zendesk_audit_sync_runs"]
    )
    assert sorted(stored(engine)) == [1, 2, 11, 12, 21, 22]
    run = run_row(engine, run_id)
    assert (run["pages"], run["rows_inserted"], run["rows_updated"]) == (6, 6, 0)
    assert store.watermark(ACCOUNT) == T0 + timedelta(minutes=2)
    saved = {s.id: (s.position, s.done) for s in store.slices(ACCOUNT)}
    assert saved == {
        first.id: (T0 + timedelta(minutes=2), True),
        second.id: (T0 + timedelta(minutes=3), False),
    }


def test_a_checkpoint_failing_at_the_commit_rolls_back_its_rows(
    store: Store, engine: Engine
) -> None:
    run_id = start(store)
    with pytest.raises(ValueError, match="no backfill slice"), store.transaction() as transaction:
        transaction.write_batch(ACCOUNT, run_id, [row(1)], [], watermark=T0)
        transaction.write_batch(ACCOUNT, run_id, [row(2)], [], slices=[SliceUpdate(999, T0, True)])
    assert stored(engine) == {}
    assert store.watermark(ACCOUNT) is None
    assert run_row(engine, run_id)["pages"] == 0


def test_a_transaction_holds_one_account(store: Store, engine: Engine) -> None:
    """Its checkpoints are written once for one account: a second account is refused, and
    nothing of the first is committed."""
    run_id = start(store)
    refused = pytest.raises(ValueError, match="in a transaction of 'acme'")
    with refused, store.transaction() as transaction:
        transaction.write_batch(ACCOUNT, run_id, [row(1)], [], watermark=T0)
        transaction.write_batch("other", run_id, [row(2, account="other")], [])
    assert stored(engine) == {} and stored(engine, "other") == {}
    assert store.watermark(ACCOUNT) is None


def test_large_pages_are_chunked(store: Store, engine: Engine) -> None:
    run_id = start(store)
    rows = [row(i) for i in range(1, 1201)]
    assert store.write_page(ACCOUNT, run_id, rows, [], None).inserted == 1200
    changed = [row(i, version=1 if i % 3 == 0 else 0) for i in range(1, 1201)]
    result = store.write_page(ACCOUNT, run_id, changed, [], None)
    assert (result.inserted, result.updated) == (0, 400)


def test_pages_of_every_size_are_stored_by_a_few_shapes_of_statement(
    store: Store, engine: Engine
) -> None:
    """A statement per batch size would each be compiled and kept by the driver: memory
    would grow with the records a run writes. Sizes 1 to 140, written then rewritten with
    every third record changed, go by a dozen statement texts on SQLite and PostgreSQL
    (MySQL's go through SQLAlchemy Core, whose one compiled statement expands its IN)."""
    texts: set[str] = set()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "zendesk_audit_logs" in statement:
            texts.add(statement)

    run_id = start(store)
    next_id, pages = 1, []
    for size in range(1, 141):
        pages.append(range(next_id, next_id + size))
        next_id += size
    for ids in pages:
        assert store.write_page(ACCOUNT, run_id, [row(i) for i in ids], [], None).inserted == len(
            ids
        )
    for ids in pages:
        changed = [row(i, version=1 if i % 3 == 0 else 0) for i in ids]
        result = store.write_page(ACCOUNT, run_id, changed, [], None)
        assert (result.inserted, result.updated) == (0, sum(1 for i in ids if i % 3 == 0))
    rows = stored(engine)
    assert set(rows) == set(range(1, next_id))
    assert all(rows[i]["raw"]["version"] == (1 if i % 3 == 0 else 0) for i in rows)
    if engine.dialect.name != "mysql":
        assert len(texts) <= 20, len(texts)


def test_an_old_sqlite_parameter_limit_is_respected(sqlite_url: str) -> None:
    """SQLite before 3.32 takes 999 parameters a statement: the rows go in smaller ones."""
    import sqlite3

    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)

    @sa.event.listens_for(engine, "connect")
    def old_limit(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)

    engine.dispose()  # reconnect with the old limit
    try:
        store = Store(engine)
        rows = [row(i) for i in range(1, 1201)]
        assert store.write_page(ACCOUNT, start(store), rows, [], None).inserted == 1200
        assert set(stored(engine)) == set(range(1, 1201))
    finally:
        engine.dispose()


# -- watermark -------------------------------------------------------------------------


def test_watermark_never_moves_backwards(store: Store) -> None:
    run_id = start(store)
    assert store.watermark(ACCOUNT) is None
    store.write_page(ACCOUNT, run_id, [row(1)], [], None)
    assert store.watermark(ACCOUNT) is None
    store.write_page(ACCOUNT, run_id, [], [], T0)
    store.write_page(ACCOUNT, run_id, [], [], T0 - timedelta(seconds=1))
    assert store.watermark(ACCOUNT) == T0
    store.write_page(ACCOUNT, run_id, [], [], None)
    assert store.watermark(ACCOUNT) == T0
    store.set_watermark(ACCOUNT, T0 - timedelta(hours=1))
    assert store.watermark(ACCOUNT) == T0
    store.set_watermark(ACCOUNT, T0 + timedelta(microseconds=1))
    assert store.watermark(ACCOUNT) == T0 + timedelta(microseconds=1)
    store.set_watermark(ACCOUNT, T0 - timedelta(days=3), allow_backwards=True)
    assert store.watermark(ACCOUNT) == T0 - timedelta(days=3)
    assert store.watermark("other") is None


def test_a_streams_watermark_moves_by_the_stores_clock(
    store: Store, engine: Engine, clock: TickingWallClock
) -> None:
    """The access log's watermark, as the audit log's: forwards only unless told, and
    stamped by the clock the store was given, not the wall clock."""
    state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
    assert state.set_watermark(ACCOUNT, T0) == T0
    stamped = clock.now
    assert state.set_watermark(ACCOUNT, T0 - timedelta(hours=1)) == T0
    assert state.set_watermark(ACCOUNT, T0 - timedelta(hours=1), allow_backwards=True) == (
        T0 - timedelta(hours=1)
    )
    assert store.watermark(ACCOUNT) is None  # the audit log's is its own
    with engine.connect() as conn:
        (updated_at,) = conn.execute(sa.select(stream_state.c.updated_at)).one()
    assert updated_at == clock.now == stamped + 2 * clock.step


# -- rejects and runs ------------------------------------------------------------------


def test_rejects_are_stored_with_their_run(store: Store, engine: Engine) -> None:
    run_id = start(store)
    rejects = [
        FakeReject(None, "no id", '{"action": "x"}'),
        FakeReject("abc", "id is not an integer", '{"id": "abc"}'),
        FakeReject("9" * 100, "id is not an integer", "{}"),
    ]
    result = store.write_page(ACCOUNT, run_id, [row(1)], rejects, T0)
    assert (result.inserted, result.rejected) == (1, 3)
    with engine.connect() as conn:
        found = conn.execute(sa.select(audit_rejects).order_by(audit_rejects.c.id)).mappings()
        saved = [dict(r) for r in found]
    assert [(r["run_id"], r["account"], r["record_id"], r["reason"]) for r in saved] == [
        (run_id, ACCOUNT, None, "no id"),
        (run_id, ACCOUNT, "abc", "id is not an integer"),
        (run_id, ACCOUNT, "9" * 64, "id is not an integer"),
    ]
    assert saved[0]["raw"] == '{"action": "x"}'
    assert all(r["rejected_at"].tzinfo is UTC for r in saved)


def test_run_counters_add_up(store: Store, engine: Engine, clock: TickingWallClock) -> None:
    run_id = start(store)
    started = clock.now
    store.write_page(ACCOUNT, run_id, [row(1), row(2)], [FakeReject(None, "no id", "{}")], T0)
    store.write_page(ACCOUNT, run_id, [row(2, version=1), row(3)], [], T0)
    store.write_page(ACCOUNT, run_id, [row(3)], [], T0)
    store.finish_run(run_id, "success", watermark_after=T0, requests=3, rate_limited=1, error=None)
    run = run_row(engine, run_id)
    assert run["status"] == "success"
    assert run["started_at"] == started
    assert run["finished_at"] is not None and run["finished_at"] > started
    assert (run["pages"], run["rows_inserted"], run["rows_updated"], run["rows_rejected"]) == (
        3,
        3,
        1,
        1,
    )
    assert (run["requests"], run["rate_limited"], run["watermark_after"]) == (3, 1, T0)
    assert run["window_start"] == T0 - timedelta(days=1)
    assert run["watermark_before"] is None


def test_finish_run_refuses_unknown_status(store: Store) -> None:
    run_id = start(store)
    with pytest.raises(ValueError, match="success"):
        store.finish_run(run_id, "running", watermark_after=None, requests=0, rate_limited=0)


def test_starting_a_run_abandons_the_accounts_running_ones(store: Store, engine: Engine) -> None:
    killed = start(store)
    other_account = start(store, "other")
    new = start(store)
    assert new not in (killed, other_account)
    assert run_row(engine, killed)["status"] == "abandoned"
    assert "killed" in run_row(engine, killed)["error"]
    assert run_row(engine, other_account)["status"] == "running"
    assert run_row(engine, new)["status"] == "running"


def test_a_long_error_is_truncated(store: Store, engine: Engine) -> None:
    run_id = start(store)
    store.finish_run(
        run_id, "failed", watermark_after=None, requests=1, rate_limited=0, error="x" * 10_000
    )
    assert len(run_row(engine, run_id)["error"]) == 4000


# -- status ----------------------------------------------------------------------------


def test_account_status(store: Store, clock: TickingWallClock) -> None:
    assert store.account_status() == []

    first = start(store)
    store.write_page(ACCOUNT, first, [row(1), row(2)], [], T0)
    store.finish_run(first, "success", watermark_after=T0, requests=2, rate_limited=0)
    success_at = clock.now

    second = start(store)
    store.write_page(ACCOUNT, second, [row(3)], [FakeReject(None, "no id", "{}")], None)
    store.finish_run(second, "failed", watermark_after=T0, requests=5, rate_limited=2, error="boom")
    failure_at = clock.now

    third = start(store)
    start(store, "zeta")

    statuses = store.account_status()
    assert [s.account for s in statuses] == [ACCOUNT, "zeta"]
    status = statuses[0]
    assert status.watermark == T0
    assert (status.rows, status.rejects) == (3, 1)
    assert status.last_run is not None
    assert (status.last_run.id, status.last_run.status) == (third, "running")
    assert status.last_success_at == success_at
    assert status.last_failure_at == failure_at
    assert status.last_failure_error == "boom"

    runs = store.recent_runs(ACCOUNT)
    assert [r.id for r in runs] == [third, second, first]
    assert runs[1].rows_inserted == 1 and runs[1].rows_rejected == 1
    assert runs[1].requests == 5 and runs[1].rate_limited == 2
    assert [r.id for r in store.recent_runs(ACCOUNT, limit=1)] == [third]

    # An abandoned run is a failure too; its time is when it started.
    fourth = start(store)
    abandoned = store.recent_runs(ACCOUNT)[1]
    assert abandoned.id == third and abandoned.status == "abandoned"
    status = store.account_status(ACCOUNT)[0]
    assert status.last_failure_at == abandoned.started_at
    assert status.last_run is not None and status.last_run.id == fourth

    empty = store.account_status("nobody")[0]
    assert (empty.rows, empty.rejects, empty.last_run, empty.watermark) == (0, 0, None, None)


# -- engine ----------------------------------------------------------------------------


def test_plain_urls_get_the_default_drivers() -> None:
    assert parse_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("mysql://u@h/db").drivername == "mysql+pymysql"
    assert parse_url("mariadb://u@h/db").drivername == "mariadb+pymysql"
    assert parse_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"
    assert parse_url("sqlite:///x.db").drivername == "sqlite"


@pytest.mark.parametrize(
    "url", ["mssql+pyodbc://u:p@h/db", "oracle://u@h/db", "sqlite+pysqlcipher:///x.db"]
)
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="unsupported") as caught:
        open_engine(url)
    assert "p@" not in str(caught.value)


def test_a_garbled_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid URL"):
        open_engine("not a url at all")


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    with pytest.raises(ConfigError, match=r"pip install '\.\[postgres\]'"):
        open_engine("postgresql://u@127.0.0.1/db")
    monkeypatch.setitem(sys.modules, "pymysql", None)
    with pytest.raises(ConfigError, match=r"\[mysql\] extra"):
        open_engine("mysql://u@127.0.0.1/db")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://etl:s3cr3t-pw@127.0.0.1:1/auditdb",
        "mysql://etl:s3cr3t-pw@127.0.0.1:1/auditdb",
    ],
)
def test_an_unreachable_server_is_a_database_error_without_password(url: str) -> None:
    engine = open_engine(url)
    with pytest.raises(DatabaseError) as caught:
        check_connection(engine)
    message = str(caught.value)
    assert "s3cr3t" not in message
    assert "127.0.0.1:1/auditdb" in message
    assert "\n" not in message
    assert "check" in message


def test_a_failing_query_is_one_line_without_sql(db_url: str) -> None:
    engine = open_engine(db_url)  # no migration: the tables are missing
    try:
        with pytest.raises(DatabaseError) as caught:
            Store(engine).watermark(ACCOUNT)
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "reading the watermark" in message
    assert "SELECT" not in message and "\n" not in message
    password = make_url(db_url).password
    assert not password or str(password) not in message


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    old_umask = os.umask(0o022)
    try:
        engine = open_engine(f"sqlite:///{path}")
        check_connection(engine)
        engine.dispose()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_existing_sqlite_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch()
    path.chmod(0o640)
    engine = open_engine(f"sqlite:///{path}")
    check_connection(engine)
    engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_sqlite_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        open_engine(f"sqlite:///{tmp_path / 'nowhere' / 'audit.db'}")


def test_sqlite_settings(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    engine.dispose()


def test_sqlite_transactions_are_real(sqlite_url: str) -> None:
    """A rolled-back page must leave nothing, DDL included (SQLAlchemy emits BEGIN)."""
    engine = open_engine(sqlite_url)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        raise RuntimeError
    assert not sa.inspect(engine).has_table("t")
    engine.dispose()


def test_concurrent_writers_on_one_sqlite_file_wait_their_turn(sqlite_url: str) -> None:
    """Two processes (here: engines in threads) syncing different accounts at once."""
    setup = open_engine(sqlite_url)
    migrate.upgrade(setup)
    setup.dispose()
    errors: list[BaseException] = []

    def sync(account: str) -> None:
        engine = open_engine(sqlite_url)
        try:
            store = Store(engine)
            run_id = store.start_run(account, T0, T0, None)
            for page in range(30):
                ids = range(page * 20, page * 20 + 20)
                rows = [row(i, account=account) for i in ids]
                store.write_page(account, run_id, rows, [], T0 + timedelta(seconds=page))
                store.account_status(account)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=sync, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    check = open_engine(sqlite_url)
    assert len(stored(check, "a")) == len(stored(check, "b")) == 600
    check.dispose()


def test_raw_keeps_its_characters_not_escapes(store: Store, engine: Engine) -> None:
    """``raw`` is stored as compact JSON whose characters beyond ASCII are themselves, on every
    dialect and whichever path wrote it (a row of parse_record's, or any other)."""
    parsed = parse_record(
        {"id": 7, "created_at": "2024-05-01T12:00:00Z", "n": "Zoë ✓"}, ACCOUNT, T0
    )
    assert isinstance(parsed, dict)
    store.write_page(ACCOUNT, start(store), [parsed, row(8)], [], None)
    with engine.connect() as conn:
        texts = conn.execute(sa.select(sa.cast(audit_logs.c.raw, sa.Text))).scalars().all()
    assert len(texts) == 2
    for text in texts:
        assert "Zoë ✓" in text and "\\u" not in text
