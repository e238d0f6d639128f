"""Upgrading a database made by an older release keeps every row.

``tests/data/schema_0001.db`` is a SQLite database made at revision 0001 (before the
backfill plan and the run kind existed) with some rows, committed as it shipped. On
PostgreSQL and MariaDB the same rows are written at revision 0001 and then upgraded.
Rebuild the file (only if 0001's rows must change) with:

    .venv/bin/python tests/test_upgrade.py
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.state import sync_runs, sync_slices
from etl.storage.store import Store

SAVED = Path(__file__).resolve().parent / "data" / "schema_0001.db"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
RAW = {"id": 1001, "created_at": "2024-05-01T12:00:00Z", "action": "update", "x": "Zoë 😀"}


def write_0001_rows(conn: Connection) -> None:
    """Rows as release 0001 wrote them: a run, two records, a reject and a watermark."""
    naive = conn.dialect.name != "postgresql"  # SQLite and MySQL keep naive UTC

    def t(value: datetime) -> datetime | str:
        if conn.dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value.replace(tzinfo=None) if naive else value

    conn.execute(
        sa.text(
            "INSERT INTO zendesk_audit_sync_runs (account, started_at, finished_at, status, "
            "window_start, window_end, pages, requests, rate_limited, rows_inserted, "
            "rows_updated, rows_rejected) VALUES ('acme', :t, :t, 'success', :t, :t, "
            "2, 2, 0, 2, 0, 1)"
        ),
        {"t": t(T0)},
    )
    run_id = conn.execute(sa.text("SELECT MAX(id) FROM zendesk_audit_sync_runs")).scalar()
    for record_id, actor in ((1001, "Zoë 😀"), (1002, None)):
        conn.execute(
            sa.text(
                "INSERT INTO zendesk_audit_logs (account, id, action, actor_name, created_at, "
                "raw, synced_at) VALUES ('acme', :id, 'update', :actor, :t, :raw, :t)"
            ),
            {
                "id": record_id,
                "actor": actor,
                "t": t(T0),
                "raw": json.dumps({**RAW, "id": record_id}),
            },
        )
    conn.execute(
        sa.text(
            "INSERT INTO zendesk_audit_rejects (account, run_id, record_id, reason, raw, "
            "rejected_at) VALUES ('acme', :run, NULL, 'no id', '{}', :t)"
        ),
        {"t": t(T0), "run": run_id},
    )
    conn.execute(
        sa.text(
            "INSERT INTO zendesk_audit_sync_state (account, watermark, updated_at) "
            "VALUES ('acme', :t, :t)"
        ),
        {"t": t(T0)},
    )


def check_upgraded(url: str) -> None:
    engine = open_engine(url)
    try:
        assert migrate.current_revision(engine) == "0001"
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        store = Store(engine)
        assert store.watermark("acme") == T0
        (status,) = store.account_status("acme")
        assert (status.rows, status.rejects) == (2, 1)
        assert status.last_run is not None
        assert (status.last_run.kind, status.last_run.rows_inserted) == ("sync", 2)
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, actor_name, raw FROM zendesk_audit_logs"))
            by_id = {row.id: row for row in rows}
            kinds = conn.execute(sa.select(sync_runs.c.kind)).scalars().all()
            assert conn.execute(sa.select(sa.func.count()).select_from(sync_slices)).scalar() == 0
        assert by_id[1001].actor_name == "Zoë 😀"
        raw = by_id[1001].raw
        assert (json.loads(raw) if isinstance(raw, str) else raw) == RAW
        assert kinds == ["sync"]
        # the new parts work on the upgraded database
        store.add_slices("acme", [(T0, T0)])
        assert [s.start for s in store.slices("acme")] == [T0]
        run_id = store.start_run("acme", T0, T0, T0, kind="resync")
        assert store.recent_runs("acme", 1)[0].id == run_id
    finally:
        engine.dispose()


def test_the_saved_0001_sqlite_database_upgrades_with_its_data(tmp_path: Path) -> None:
    copy = tmp_path / "audit.db"
    shutil.copyfile(SAVED, copy)
    check_upgraded(f"sqlite:///{copy}")


def test_a_database_written_at_0001_upgrades_with_its_data(db_url: str) -> None:
    engine = open_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        write_0001_rows(conn)
    engine.dispose()
    check_upgraded(db_url)


def rebuild_saved() -> None:  # pragma: no cover - run by hand
    SAVED.parent.mkdir(exist_ok=True)
    SAVED.unlink(missing_ok=True)
    engine = open_engine(f"sqlite:///{SAVED}")
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        write_0001_rows(conn)
    engine.dispose()
    db = sqlite3.connect(SAVED)
    db.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
    db.execute("VACUUM")
    db.close()


if __name__ == "__main__":  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    rebuild_saved()
    print(f"wrote {SAVED}")
