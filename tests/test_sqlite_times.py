"""Plain SQL on stored times gives the same answers on every database.

SQLite has no time type: what it compares is the stored text. Times are stored as the
tool prints them (``2026-10-07T01:13:06Z``; six fraction digits where a column keeps
microseconds), so a query written with a printed time or a bare date finds on SQLite
what it finds on PostgreSQL and MariaDB. Revision 0010 rewrites what older releases
stored (``2026-10-07 01:13:06.000000``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.databases import make_database, migrate_from_template, selected_kinds
from sqlalchemy.engine import Engine

from etl.records.audit import parse_record
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.coltypes import sqlite_time
from etl.storage.store import Store

ACCOUNT = "acme"
# Records on both sides of the cuts below, several in the very second of a cut.
BASE = datetime(2026, 12, 3, 23, 59, 58, tzinfo=UTC)
TIMES = [BASE + timedelta(seconds=s) for s in (0, 1, 2, 2, 2, 3, 86400, 86401, 90000)]
SYNCED = datetime(2026, 12, 4, 0, 0, 0, 250000, tzinfo=UTC)


def record(record_id: int, created_at: datetime) -> dict[str, object]:
    return {
        "id": record_id,
        "action": "update",
        "actor_id": 7,
        "created_at": created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source_type": "rule",
    }


@pytest.fixture(scope="module", params=selected_kinds())
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One store of each kind for the module, holding ``TIMES``: its tests only read it."""
    kind = str(request.param)
    with contextlib.contextmanager(make_database)(kind, tmp_path_factory.mktemp(kind)) as url:
        assert migrate_from_template(url), "a fresh database is empty and unused"
        engine = open_engine(url)
        try:
            store = Store(engine, now=lambda: SYNCED)
            run_id = store.start_run(ACCOUNT, SYNCED, SYNCED, SYNCED)
            rows = [parse_record(record(i, t), ACCOUNT, SYNCED) for i, t in enumerate(TIMES, 1)]
            store.write_page(ACCOUNT, run_id, [r for r in rows if isinstance(r, dict)], [], None)
            yield engine
        finally:
            engine.dispose()


def count(engine: Engine, where: str) -> int:
    with engine.connect() as conn:
        sql = f"SELECT COUNT(*) FROM zendesk_audit_logs WHERE account = 'acme' AND {where}"
        return int(conn.execute(sa.text(sql)).scalar_one())


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("created_at >= '2026-12-04T00:00:00Z'", 7),
        ("created_at > '2026-12-04T00:00:00Z'", 4),
        ("created_at < '2026-12-04T00:00:00Z'", 2),
        ("created_at <= '2026-12-04T00:00:00Z'", 5),
        ("created_at = '2026-12-04T00:00:00Z'", 3),
        ("created_at >= '2026-12-04'", 7),
        ("created_at < '2026-12-05'", 8),
        ("created_at >= '2026-12-04' AND created_at < '2026-12-05'", 6),
        ("created_at BETWEEN '2026-12-04T00:00:00Z' AND '2026-12-04T23:59:59Z'", 6),
        ("synced_at >= '2026-12-04'", 9),
        ("synced_at < '2026-12-04T00:00:01Z'", 9),
        ("synced_at > '2026-12-04T00:00:00'", 9),
    ],
)
def test_a_printed_time_or_a_bare_date_compares_as_on_every_database(
    engine: Engine, where: str, expected: int
) -> None:
    assert count(engine, where) == expected


def test_sqlite_stores_the_time_as_the_tool_prints_it(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)
    store = Store(engine, now=lambda: SYNCED)
    run_id = store.start_run(ACCOUNT, SYNCED, SYNCED, SYNCED)
    (row,) = [parse_record(record(1, BASE), ACCOUNT, SYNCED)]
    assert isinstance(row, dict)
    store.write_page(ACCOUNT, run_id, [row], [], BASE)
    path = sqlite_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        created, synced = db.execute(
            "SELECT created_at, synced_at FROM zendesk_audit_logs"
        ).fetchone()
        watermark = db.execute("SELECT watermark FROM zendesk_audit_sync_state").fetchone()[0]
        started = db.execute("SELECT started_at FROM zendesk_audit_sync_runs").fetchone()[0]
        (written,) = db.execute("SELECT DISTINCT written_at FROM zendesk_audit_ledger").fetchone()
    assert created == "2026-12-03T23:59:58Z"
    assert synced == started == written == "2026-12-04T00:00:00.250000Z"
    assert watermark == "2026-12-03T23:59:58.000000Z"
    # and the job reads its own times back as they were
    assert store.watermark(ACCOUNT) == BASE
    assert store.newest_created_at(ACCOUNT) == BASE
    assert store.recent_runs(ACCOUNT, 1)[0].started_at == SYNCED
    engine.dispose()


def test_the_text_sorts_as_the_times_do() -> None:
    """Fixed width within a column: text order is time order, fractions included."""
    moments = [
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 999999, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
    ]
    for fsp in (0, 6):
        texts = [sqlite_time(m, fsp) for m in moments]
        assert texts == sorted(texts)
        assert all(t.endswith("Z") and t[10] == "T" for t in texts)
    assert sqlite_time(moments[3], 0) == "2026-01-01T00:00:00Z"


OLD_ROWS = {
    # table: (columns, values as releases before 0010 stored them)
    "zendesk_audit_sync_runs": (
        "id, account, started_at, finished_at, status, window_start, window_end, "
        "watermark_before, watermark_after",
        "1, 'acme', '2026-12-04 00:00:00.250000', '2026-12-04 00:00:01.500000', 'success', "
        "'2026-12-03 00:00:00.000000', '2026-12-04 00:00:00.000000', NULL, "
        "'2026-12-03 23:59:58.000000'",
    ),
    "zendesk_audit_logs": (
        "account, id, action, created_at, raw, synced_at, stored_seq",
        "'acme', 1, 'update', '2026-12-03 23:59:58.000000', '{\"id\": 1}', "
        "'2026-12-04 00:00:00.250000', 1",
    ),
    "zendesk_audit_sync_state": (
        "account, watermark, updated_at, notice, notice_at",
        "'acme', '2026-12-03 23:59:58.000000', '2026-12-04 00:00:01.500000', 'x', "
        "'2026-12-04 00:00:01.000000'",
    ),
    "zendesk_audit_sync_slices": (
        "account, slice_start, slice_end, position, done",
        "'acme', '2026-12-03 00:00:00.000000', '2026-12-04 00:00:00.123456', "
        "'2026-12-03 23:59:58.000000', 0",
    ),
    "zendesk_audit_rejects": (
        "account, run_id, record_id, reason, raw, rejected_at",
        "'acme', 1, '2', 'no', '{}', '2026-12-04 00:00:00.250000'",
    ),
    "zendesk_audit_export_consumers": (
        "consumer, account, position, updated_at",
        "'siem', 'acme', 1, '2026-12-04 00:00:02.000000'",
    ),
}
NEW_VALUES = {
    "zendesk_audit_sync_runs": (
        "2026-12-04T00:00:00.250000Z",
        "2026-12-04T00:00:01.500000Z",
        "2026-12-03T00:00:00.000000Z",
        "2026-12-04T00:00:00.000000Z",
        None,
        "2026-12-03T23:59:58.000000Z",
    ),
    "zendesk_audit_logs": ("2026-12-03T23:59:58Z", "2026-12-04T00:00:00.250000Z"),
    "zendesk_audit_sync_state": (
        "2026-12-03T23:59:58.000000Z",
        "2026-12-04T00:00:01.500000Z",
        "2026-12-04T00:00:01Z",
    ),
    "zendesk_audit_sync_slices": (
        "2026-12-03T00:00:00.000000Z",
        "2026-12-04T00:00:00.123456Z",
        "2026-12-03T23:59:58.000000Z",
    ),
    "zendesk_audit_rejects": ("2026-12-04T00:00:00.250000Z",),
    "zendesk_audit_export_consumers": ("2026-12-04T00:00:02.000000Z",),
}
TIME_COLUMNS = {
    "zendesk_audit_sync_runs": "started_at, finished_at, window_start, window_end, "
    "watermark_before, watermark_after",
    "zendesk_audit_logs": "created_at, synced_at",
    "zendesk_audit_sync_state": "watermark, updated_at, notice_at",
    "zendesk_audit_sync_slices": "slice_start, slice_end, position",
    "zendesk_audit_rejects": "rejected_at",
    "zendesk_audit_export_consumers": "updated_at",
}


def stored_times(path: Path) -> dict[str, tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return {
            table: db.execute(f"SELECT {columns} FROM {table}").fetchone()
            for table, columns in TIME_COLUMNS.items()
        }


def test_revision_0010_rewrites_the_times_older_releases_stored(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0005")
    with engine.begin() as conn:
        for table, (columns, values) in OLD_ROWS.items():
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"))
    migrate.upgrade(engine)
    assert stored_times(path) == NEW_VALUES
    store = Store(engine)
    assert store.watermark(ACCOUNT) == datetime(2026, 12, 3, 23, 59, 58, tzinfo=UTC)
    assert store.recent_runs(ACCOUNT, 1)[0].started_at == SYNCED
    assert count(engine, "created_at >= '2026-12-03T23:59:58Z'") == 1
    engine.dispose()


def test_revision_0010_goes_back_to_the_old_text(tmp_path: Path) -> None:
    """A downgrade leaves what the releases before it read."""
    path = tmp_path / "audit.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0005")
    with engine.begin() as conn:
        for table, (columns, values) in OLD_ROWS.items():
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})"))
    before = stored_times(path)
    migrate.upgrade(engine, "0010")
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(migrate.make_config(conn), "0009")  # the revision before 0010
    assert stored_times(path) == before
    engine.dispose()


def test_revision_0013_rewrites_the_ledger_times_the_writer_left_with_a_space(
    tmp_path: Path,
) -> None:
    """Releases from 0010 to 0012 wrote the ledger's ``written_at`` with a space, which
    ``verify --since TIME`` compared wrongly; 0013 rewrites them and nothing else."""
    path = tmp_path / "audit.db"
    engine = open_engine(f"sqlite:///{path}")
    migrate.upgrade(engine, "0012")
    entry = "INSERT INTO zendesk_audit_ledger (account, entry, kind, record_hash, entry_hash, "
    with engine.begin() as conn:
        for number, written in ((7, "2026-12-04 00:00:00.250000"), (8, "2026-12-04T00:00:01Z")):
            conn.execute(
                sa.text(entry + "written_at) VALUES ('acme', :n, 'R', :h, :h, :w)"),
                {"n": number, "h": bytes(32), "w": written},
            )
    migrate.upgrade(engine)
    with sqlite3.connect(path) as db:
        times = db.execute("SELECT written_at FROM zendesk_audit_ledger ORDER BY entry").fetchall()
    assert times == [("2026-12-04T00:00:00.250000Z",), ("2026-12-04T00:00:01Z",)]
    engine.dispose()
