"""Upgrading to the export's revision keeps every row and numbers it; the revision can
run again after a kill (MariaDB commits each DDL statement on its own)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from parts.exports import export, store_records
from sqlalchemy.engine import Connection, Engine
from support import audit_record

from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.store import Store

# The revision that adds the store sequence (migrations/versions/*_export.py).
EXPORT_REVISION = "0004"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
# (account, id, synced after T0 by seconds): stored out of id order
ROWS = [("acme", 30, 1), ("acme", 10, 2), ("acme", 20, 2), ("beta", 5, 0), ("acme", 40, 9)]


def previous_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.make_config()).get_revision(EXPORT_REVISION)
    assert script is not None and isinstance(script.down_revision, str)
    return script.down_revision


def write_old_rows(conn: Connection) -> None:
    def t(value: datetime) -> datetime | str:
        if conn.dialect.name == "sqlite":
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value if conn.dialect.name == "postgresql" else value.replace(tzinfo=None)

    for account, record_id, seconds in ROWS:
        conn.execute(
            sa.text(
                "INSERT INTO zendesk_audit_logs (account, id, action, created_at, raw, "
                "synced_at) VALUES (:account, :id, 'update', :created, :raw, :synced)"
            ),
            {
                "account": account,
                "id": record_id,
                "created": t(T0),
                "raw": json.dumps(audit_record(record_id, T0)),
                "synced": t(T0 + timedelta(seconds=seconds)),
            },
        )


def numbering(engine: Engine) -> dict[tuple[str, int], int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT account, id, stored_seq FROM zendesk_audit_logs"))
        return {(account, int(i)): int(seq) for account, i, seq in rows}


def counters(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT account, last_seq FROM zendesk_audit_store_seq"))
        return {account: int(last) for account, last in rows}


def stamp(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.stamp(migrate.make_config(conn), revision)


def test_rows_stored_before_are_numbered_by_when_they_were_stored(
    db_url: str, tmp_path: Path
) -> None:
    engine = open_engine(db_url)
    try:
        migrate.upgrade(engine, previous_revision())
        with engine.begin() as conn:
            write_old_rows(conn)
        migrate.upgrade(engine)
        numbered = numbering(engine)
        # by (synced_at, id) within each account
        assert numbered == {
            ("acme", 30): 1, ("acme", 10): 2, ("acme", 20): 3, ("acme", 40): 4, ("beta", 5): 1
        }  # fmt: skip
        assert counters(engine) == {"acme": 4, "beta": 1}

        # killed after some DDL (MariaDB), before the version moved: it runs again
        stamp(engine, previous_revision())
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE zendesk_audit_export_consumers"))
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert numbering(engine) == numbered
        assert counters(engine) == {"acme": 4, "beta": 1}

        # new rows follow; an export gives everything, old rows first
        store = Store(engine)
        store_records(store, [audit_record(5, T0)])
        assert numbering(engine)[("acme", 5)] == 5
        lines = export(store, tmp_path / "feed.jsonl")
        assert [line["id"] for line in lines] == [30, 10, 20, 40, 5]
    finally:
        engine.dispose()
