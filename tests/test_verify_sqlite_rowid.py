"""SQLite's rows read in the ``(account, stored_seq)`` index's order, ``(stored_seq,
rowid)`` (``etl.integrity.reads.rows``), and by id, a window at a time, where a DBA's
rebuild of the table leaves no rowid to trust: a table ``WITHOUT ROWID``, or a column named
``rowid``, a generated one too (whose values need not be unique). Either way a row moved
onto another's number past a page's end is found, once."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.verify.signed import synced, verified_in_process

from etl.integrity.reads import sql as shared
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs
from zendesk_sim import SimulatedZendesk

pytestmark = pytest.mark.databases("sqlite")  # the one database whose rows have rowids


def _findings(db_url: str) -> list[tuple[str, str | None]]:
    return [(f.kind, f.record_id) for f in verified_in_process(db_url).findings]


def _rebuilt_without_rowid(conn: sa.Connection) -> None:
    """The audit table made again ``WITHOUT ROWID``, its rows and indexes kept."""
    made = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'zendesk_audit_logs'"
    ).scalar_one()
    indexes = (
        conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            " AND tbl_name = 'zendesk_audit_logs'"
        )
        .scalars()
        .all()
    )
    conn.exec_driver_sql("ALTER TABLE zendesk_audit_logs RENAME TO old_audit_logs")
    conn.exec_driver_sql(f"{made.rstrip()} WITHOUT ROWID")
    conn.exec_driver_sql("INSERT INTO zendesk_audit_logs SELECT * FROM old_audit_logs")
    conn.exec_driver_sql("DROP TABLE old_audit_logs")
    for index in indexes:
        conn.exec_driver_sql(index)


@pytest.mark.parametrize(
    "rebuild", ["as made", "without rowid", "a rowid column", "a generated rowid column"]
)
def test_a_row_moved_onto_anothers_number_past_a_page_is_found_once(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
    rebuild: str,
) -> None:
    synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(audit_logs.c.stored_seq, audit_logs.c.id).order_by(audit_logs.c.stored_seq)
        ).all()
        seq, moved = rows[13][0], rows[50][1]  # the 7th row of the second page of 7
        conn.execute(sa.update(audit_logs).where(audit_logs.c.id == moved).values(stored_seq=seq))
        if rebuild == "without rowid":
            _rebuilt_without_rowid(conn)
        elif rebuild == "a rowid column":  # one value for all: ties in it everywhere
            conn.exec_driver_sql("ALTER TABLE zendesk_audit_logs ADD COLUMN rowid INTEGER")
            conn.exec_driver_sql("UPDATE zendesk_audit_logs SET rowid = 0")
        elif rebuild == "a generated rowid column":  # hidden: not in ``table_info``
            conn.exec_driver_sql(
                "ALTER TABLE zendesk_audit_logs ADD COLUMN rowid INTEGER"
                " GENERATED ALWAYS AS (0) VIRTUAL"
            )
    engine.dispose()
    monkeypatch.setattr(shared, "PAGE", 7)
    found = _findings(db_url)
    assert sorted(found) == sorted([("deleted", str(moved)), ("inserted", str(moved))])
