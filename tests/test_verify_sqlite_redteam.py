"""A DBA's rebuilds of SQLite's audit table against verify's fast paths: a text column
given an affinity that keeps numbers, set to ``raw``'s own ``7`` and ``1.5`` (the writer
stores NULL: ``checks.derived._sqlite_value``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.verify.signed import synced, verify
from support import audit_record, recent

from etl.storage.engine import open_engine
from zendesk_sim import SimulatedZendesk

pytestmark = pytest.mark.databases("sqlite")  # SQLite's affinities and rowids
TABLE = "zendesk_audit_logs"
ODD = 9_100_000_000_001  # text fields sent as numbers: NULL in their columns


def _rebuilt(conn: sa.Connection, edit: Callable[[str], str], columns: list[str]) -> None:
    """The audit table made again from its own SQL as ``edit`` changes it, rows and
    indexes kept."""
    made = conn.exec_driver_sql(
        f"SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}'"
    ).scalar_one()
    indexes = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        f" AND tbl_name = '{TABLE}'"
    ).scalars()
    kept = list(indexes)
    conn.exec_driver_sql(f"ALTER TABLE {TABLE} RENAME TO old_audit_logs")
    conn.exec_driver_sql(edit(made))
    listed = ", ".join(columns)
    conn.exec_driver_sql(f"INSERT INTO {TABLE} ({listed}) SELECT {listed} FROM old_audit_logs")
    conn.exec_driver_sql("DROP TABLE old_audit_logs")
    for index in kept:
        conn.exec_driver_sql(index)


def _numeric(made: str) -> str:
    for column in ("action VARCHAR(255)", "source_label TEXT"):
        assert column in made
        made = made.replace(column, column.split()[0] + " NUMERIC")
    return made


def test_a_text_column_holding_raws_own_number_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    zendesk.add_records(
        [audit_record(ODD, recent(30) - timedelta(hours=2), action=7, source_label=1.5)]
    )
    path = synced(tmp_path, zendesk, db_url, None)
    assert verify(path)[0] == 0  # NULL, NULL: as the job stores them
    engine = open_engine(db_url)
    with engine.begin() as conn:
        columns = conn.exec_driver_sql(f"SELECT name FROM pragma_table_info('{TABLE}')")
        _rebuilt(conn, _numeric, list(columns.scalars()))
        conn.exec_driver_sql(f"UPDATE {TABLE} SET action = 7, source_label = 1.5 WHERE id = {ODD}")
        kinds = conn.exec_driver_sql(
            f"SELECT typeof(action), typeof(source_label) FROM {TABLE} WHERE id = {ODD}"
        ).one()
    engine.dispose()
    assert tuple(kinds) == ("integer", "real")  # what SQLite kept
    code, report = verify(path)
    (finding,) = report["accounts"][0]["findings"]
    assert (code, finding["record_id"]) == (1, str(ODD))
    assert finding["detail"].endswith("action, source_label differ from what its raw gives")
