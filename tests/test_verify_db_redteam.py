"""A DBA's edits against verify's PostgreSQL and MariaDB paths (and, where the rule is
shared, SQLite's): an audit id retyped as text on MariaDB and given a tab or a line's end
(the page's numbers, read by one orjson call, skipped it: ``mariadb.frames``); an audit
row moved into the access table, which no entry names the table of (its columns were
compared under the access log's rules, which reject an audit record: nothing was
compared, ``checks.derived._other_stream``); on PostgreSQL a text column made jsonb
(the columns' array held the JSON it holds, ``checks.derived.sql``). The attempts that
held without a change are in the issue's report, not kept here."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.verify.signed import found, synced, verify

from etl.storage.engine import open_engine
from zendesk_sim import SimulatedZendesk

AUDIT, ACCESS = "zendesk_audit_logs", "zendesk_access_logs"


def _target(conn: sa.Connection) -> int:
    ids = conn.exec_driver_sql(f"SELECT id FROM {AUDIT} ORDER BY stored_seq").scalars()
    return int(list(ids)[20])


@pytest.mark.databases("mysql")  # the page's numbers read as one text: MariaDB's alone
@pytest.mark.parametrize("space", ["\t", "\n", "\r"])
def test_an_id_retyped_as_text_with_a_space_in_it_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk, space: str
) -> None:
    """SQL's ``id = '6100000162954'`` no longer finds the row (nor the row-by-row read, which
    gives its text as it is): not the entry's id, so a deleted record and an inserted row."""
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        target = _target(conn)
        conn.exec_driver_sql(f"ALTER TABLE {AUDIT} MODIFY id VARCHAR(40) NOT NULL")
        conn.exec_driver_sql(
            f"UPDATE {AUDIT} SET id = CONCAT(%s, id) WHERE id = %s", (space, str(target))
        )
    engine.dispose()
    code, report = verify(path)
    inserted = ("inserted", space + str(target))
    assert (code, found(report)) == (1, {("deleted", str(target)), inserted})


def test_an_audit_row_moved_into_the_access_table_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """The row keeps its number, id and ``raw`` (so its entry's record), and leaves the
    audit table: SQL's audit log no longer holds it. Its access columns as the audit row's
    (a time where the audit record has none)."""
    _moved(tmp_path, db_url, zendesk, "as stored")


@pytest.mark.databases("postgresql", "mysql")  # dropping NOT NULL rebuilds SQLite's table
def test_an_audit_row_moved_with_its_access_columns_null_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """As above, the time's NOT NULL dropped, and the access columns NULL but for what an
    audit record gives (its ``ip_address``, ``url`` and ``path``): what the access log's
    writer would store, had it stored that record."""
    _moved(tmp_path, db_url, zendesk, "NULL")


def _moved(tmp_path: Path, db_url: str, zendesk: SimulatedZendesk, columns: str) -> None:
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        target = _target(conn)
        quote = conn.dialect.identifier_preparer.quote
        stamp = quote("timestamp")
        text_id = "CAST(id AS CHAR)" if engine.dialect.name == "mysql" else "CAST(id AS TEXT)"
        listed, taken = f"{stamp}, ip_address", "created_at, ip_address"
        if columns == "NULL":
            drop = {"mysql": f"MODIFY {stamp} DATETIME(6) NULL"}
            conn.exec_driver_sql(
                f"ALTER TABLE {ACCESS} "
                + drop.get(engine.dialect.name, f"ALTER COLUMN {stamp} DROP NOT NULL")
            )
            url = conn.exec_driver_sql(f"SELECT url FROM {AUDIT} WHERE id = {target}").scalar()
            path_of = "/" + str(url).split("://", 1)[-1].split("/", 1)[-1].split("?")[0]
            listed, taken = "ip_address, url, path", f"ip_address, url, '{path_of}'"
        conn.exec_driver_sql(
            f"INSERT INTO {ACCESS} (account, id, raw, synced_at, stored_seq, {listed})"
            f" SELECT account, {text_id}, raw, synced_at, stored_seq, {taken}"
            f" FROM {AUDIT} WHERE id = {target}"
        )
        conn.exec_driver_sql(f"DELETE FROM {AUDIT} WHERE id = {target}")
    engine.dispose()
    code, report = verify(path)
    assert (code, found(report)) == (1, {("modified", str(target))})
    (finding,) = report["accounts"][0]["findings"]
    assert "its table (raw is a record of audit_logs)" in finding["detail"]


@pytest.mark.databases("postgresql")  # MariaDB's: "What is not covered" (docs/INTEGRITY.md)
def test_a_text_column_made_jsonb_is_found(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """``action`` made jsonb holds ``"update"`` (SQL's ``action`` reads it with its quotes),
    and a NULL ``ip_address`` (``raw``'s is null) made jsonb's ``null``: the
    columns' array held the JSON itself, the text ``update`` and null, as ``raw`` gives
    them. Every row's ``action`` differs, and that row's ``ip_address``."""
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        ids = set(conn.exec_driver_sql(f"SELECT id FROM {AUDIT}").scalars())
        target = conn.exec_driver_sql(
            f"SELECT min(id) FROM {AUDIT} WHERE ip_address IS NULL"
        ).scalar()
        for column in ("action", "ip_address"):
            conn.exec_driver_sql(
                f"ALTER TABLE {AUDIT} ALTER COLUMN {column} TYPE jsonb USING to_jsonb({column})"
            )
        conn.exec_driver_sql(f"UPDATE {AUDIT} SET ip_address = 'null' WHERE id = {target}")
    engine.dispose()
    code, report = verify(path)
    assert (code, found(report)) == (1, {("modified", str(row_id)) for row_id in ids})
    details = {f["record_id"]: f["detail"] for f in report["accounts"][0]["findings"]}
    assert details[str(target)].endswith("action, ip_address differ from what its raw gives")


LEDGER = "zendesk_audit_ledger"
RETYPED = {
    "the ledger's stored_seq a decimal": (
        "chain broken",
        {"postgresql": f"ALTER TABLE {LEDGER} ALTER COLUMN stored_seq TYPE numeric"},
        f"ALTER TABLE {LEDGER} MODIFY stored_seq DECIMAL(30, 4)",
    ),
    "the ledger's entry a float": (
        "chain broken",
        {"postgresql": f"ALTER TABLE {LEDGER} ALTER COLUMN entry TYPE double precision"},
        f"ALTER TABLE {LEDGER} MODIFY entry DOUBLE NOT NULL",
    ),
    "a row's stored_seq a text": (
        "modified",
        {"postgresql": f"ALTER TABLE {AUDIT} ALTER COLUMN stored_seq TYPE text"},
        f"ALTER TABLE {AUDIT} MODIFY stored_seq VARCHAR(40)",
    ),
}


@pytest.mark.databases("postgresql", "mysql")  # SQLite's column types are not enforced
@pytest.mark.parametrize("case", list(RETYPED))
def test_a_column_read_as_a_number_retyped_is_found_not_an_internal_error(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk, case: str
) -> None:
    """Its values unchanged, a decimal ``stored_seq`` stopped the walk with an internal
    error (``struct``), a text one with the server's error, and MariaDB's float ``entry``
    read as clean; the column itself is now the finding, named, and no record verified."""
    kind, statements, mariadb = RETYPED[case]
    path = synced(tmp_path, zendesk, db_url, None)
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(statements.get(engine.dialect.name, mariadb))
    engine.dispose()
    code, report = verify(path)
    (account,) = report["accounts"]
    (finding,) = account["findings"]
    column = case.split("'s ")[1].split()[0]
    assert (code, finding["kind"], account["records_verified"]) == (1, kind, 0)
    assert f"column {column} is " in finding["detail"], finding
