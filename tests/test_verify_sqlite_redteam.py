"""A DBA's rebuilds of SQLite's audit table against verify's fast paths: a text column
given an affinity that keeps numbers, set to ``raw``'s own ``7`` and ``1.5`` (the writer
stores NULL: ``checks.derived._sqlite_value``); a second row of an id, without the primary
key, at the number of a page's last row (``reads.rows``: its next page starts after the
rowid read, or a window is read whole); an id stored as its text."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.verify.signed import found, synced, verify
from support import audit_record, recent

from etl.integrity.reads import sql as shared
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


_KEY = r"CONSTRAINT pk_zendesk_audit_logs PRIMARY KEY \(account, id\)"
# How a DBA makes room for a second row of an id, and what then gives the next page's start
_REBUILDS: dict[str, Callable[[str], str]] = {
    # the rowid read; an index of theirs made the forged row the first of the id's
    "an index steering": lambda made: re.sub(r",\s*" + _KEY, "", made),
    "a rowid column": lambda made: re.sub(_KEY, "rowid INTEGER", made),  # read by id
    "without rowid": lambda made: (
        re.sub(_KEY, "PRIMARY KEY (account, id, action)", made) + " WITHOUT ROWID"
    ),
}


@pytest.mark.parametrize("rebuild", list(_REBUILDS))
def test_a_second_row_of_an_id_at_a_pages_last_number_is_found(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
    rebuild: str,
) -> None:
    """The forged row shares the page's last row's number and id (its action changed): a
    page's sequel, which starts after that row, must not start after it too."""
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        ids = conn.exec_driver_sql(f"SELECT id FROM {TABLE} ORDER BY stored_seq").scalars()
        last = list(ids)[13]  # the 7th row of the second page of 7
        columns = [
            *conn.exec_driver_sql(f"SELECT name FROM pragma_table_info('{TABLE}')").scalars()
        ]
        _rebuilt(conn, lambda made: _REBUILDS[rebuild](made), columns)
        forged = ", ".join("'forged'" if c == "action" else c for c in columns)
        listed = ", ".join(columns)
        conn.exec_driver_sql(
            f"INSERT INTO {TABLE} ({listed}) SELECT {forged} FROM {TABLE} WHERE id = {last}"
        )
        if rebuild == "an index steering":  # its rowid, were the next page's start looked up by id
            conn.exec_driver_sql(f"CREATE INDEX steer ON {TABLE} (account, id, action DESC)")
    engine.dispose()
    monkeypatch.setattr(shared, "PAGE", 7)
    code, report = verify(path)
    assert (code, found(report)) == (1, {("inserted", str(last))})


@pytest.mark.parametrize("stored", ["its text", "a BLOB"])
def test_an_id_stored_as_other_than_an_integer_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk, stored: str
) -> None:
    """An id column rebuilt without INTEGER affinity keeps the text a DBA writes there,
    which SQL's ``id = 6100000162954`` no longer finds: not the entry's id. A BLOB (kept
    by any affinity), whose bytes need not be UTF-8, is read too."""
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        ids = conn.exec_driver_sql(f"SELECT id FROM {TABLE} ORDER BY stored_seq").scalars()
        target = list(ids)[20]
        value, read = "CAST(id AS TEXT)", f"text '{target}'"
        if stored == "its text":
            columns = conn.exec_driver_sql(f"SELECT name FROM pragma_table_info('{TABLE}')")
            untyped = list(columns.scalars())
            _rebuilt(conn, lambda made: made.replace("id BIGINT NOT NULL", "id NOT NULL"), untyped)
        else:
            value, read = "X'FF00'", "blob X'FF00'"
        conn.exec_driver_sql(f"UPDATE {TABLE} SET id = {value} WHERE id = {target}")
    engine.dispose()
    code, report = verify(path)
    assert (code, found(report)) == (1, {("deleted", str(target)), ("inserted", read)})
