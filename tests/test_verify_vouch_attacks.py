"""An attacker with write access to PostgreSQL (not the signing key) trying to make the
server vouch (``etl.integrity.checks.vouch``) for a derived column they edited, so that
plain SQL answers otherwise while ``verify`` says clean: by what the vouching condition's
operators resolve to, not by the rows alone. Rows are written by the store's own path,
edited with plain SQL, and read as ``verify``'s walk reads them (``reads.rows.rows``, then
``derived.differing`` for a row not vouched for), or by the real ``verify``. The attempts
that held without a change and guard no rule of their own are in the issue's report, not
kept here."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from etl.integrity.checks import derived
from etl.integrity.reads import rows as row_reads
from etl.integrity.verify import VerifyOptions, verify_account
from etl.records.access import parse_access_record
from etl.records.audit import Reject, parse_record
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.logs import access_logs, audit_logs
from etl.storage.store import Store
from etl.storage.streams import StreamStore

AT = datetime(2026, 11, 5, 7, 8, 9, tzinfo=UTC)
ZT = "2026-11-05T07:08:09Z"
AUDITS = [
    {
        "id": record_id,
        "action": "update",
        "actor_id": 360004113871,
        "created_at": ZT,
        "source_type": "rule",
        "url": f"https://example.zendesk.com/api/v2/audit_logs/{record_id}.json",
    }
    for record_id in (1, 2)
]
ACCESSES = [
    {
        "id": record_id,
        "timestamp": ZT,
        "user_id": "360004113871",
        "method": "GET",
        "url": "/api/v2/tickets/7.json",
        "status": 200,
    }
    for record_id in ("a1", "a2", "a3", "a4")
]
ACCESSES[3]["user_id"] = ""  # stored as NULL
# Operators no schema but pg_catalog should supply to verify's session, each true of
# anything: where the vouching condition compared operands
# of two types (a varchar column with a text), the search path's exact match was taken
# over pg_catalog's, even with pg_catalog searched first.
PLANTED = [
    ("=", "text", "varchar"),
    ("=", "varchar", "text"),
    ("<>", "varchar", "varchar"),
    ("=", "oid", "integer"),
    ("=", "oid", "regclass"),
]


def _stored(db_url: str, audits: list[dict[str, Any]], accesses: list[dict[str, Any]]) -> sa.Engine:
    """The records' rows as a sync stores them."""
    engine = open_engine(db_url)
    migrate.upgrade(engine)
    store = Store(engine)
    run_id = store.start_run("acme", AT, AT, None)
    rows, access_rows = [], []
    for record in audits:
        row = parse_record(record, "acme", AT)
        assert not isinstance(row, Reject), row
        rows.append(row)
    for record in accesses:
        row = parse_access_record(record, "acme", AT)
        assert not isinstance(row, Reject), row
        access_rows.append(row)
    with store.transaction() as transaction:
        transaction.write_batch("acme", run_id, rows, [])
    access = StreamStore(store, "access_logs", access_logs)
    access.write_page("acme", run_id, access_rows, [], None)
    return engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """Two audit rows and four access rows as a sync stores them, on PostgreSQL only (the
    one database that vouches)."""
    engine = _stored(db_url, AUDITS, ACCESSES)
    try:
        yield engine
    finally:
        engine.dispose()


def _walk(engine: sa.Engine) -> tuple[dict[str, list[str]], set[str]]:
    """Each row's derived columns found differing, as verify's walk finds them, and the
    rows PostgreSQL vouched for."""
    found, vouched = {}, set()
    with engine.connect() as conn:
        for _, record_id, text, stream, values, *_ in row_reads.rows(conn, "acme", 0):
            assert text is not None
            if values == row_reads.VOUCHED:
                vouched.add(str(record_id))
            else:
                changed = derived.differing(derived.STREAMS[stream], text, values)
                if changed:
                    found[str(record_id)] = sorted(changed)
    return found, vouched


def _plant(conn: sa.Connection, schema: str = "public") -> None:
    for number, (name, left, right) in enumerate(PLANTED):
        function = f"{schema}.planted_{number}"
        conn.exec_driver_sql(
            f"CREATE FUNCTION {function}({left}, {right}) RETURNS boolean"
            " LANGUAGE sql IMMUTABLE AS 'SELECT true'"
        )
        conn.exec_driver_sql(
            f"CREATE OPERATOR {schema}.{name} (LEFTARG = {left}, RIGHTARG = {right},"
            f" FUNCTION = {function})"
        )


@pytest.mark.databases("postgresql")  # the one database that vouches
def test_an_operator_planted_in_public_makes_postgresql_vouch_for_no_edit(
    engine: sa.Engine,
) -> None:
    """With the default search path (``"$user", public``, pg_catalog searched first), an
    operator for ``text = varchar`` in ``public`` was the one the condition took: every
    varchar column edited (one a row, each rule's own), and the row vouched for."""
    assert _walk(engine) == ({}, {"1", "2", "a1", "a2", "a3"})  # a4's "": the exact path
    with engine.begin() as conn:  # edited before the plant: it changes the edits' WHERE too
        conn.execute(sa.update(audit_logs).where(audit_logs.c.id == 2).values(action="destroy"))
        where = access_logs.c.id == "a2"
        conn.execute(sa.update(access_logs).where(where).values(path="/q"))
        where = access_logs.c.id == "a3"
        conn.execute(sa.update(access_logs).where(where).values(user_id="360004113872"))
        where = access_logs.c.id == "a4"  # raw's "" is stored as NULL, not as ""
        conn.execute(sa.update(access_logs).where(where).values(user_id=""))
        _plant(conn)
    want = {"2": ["action"], "a2": ["path"], "a3": ["user_id"], "a4": ["user_id"]}
    assert _walk(engine)[0] == want


@pytest.mark.databases("postgresql")  # the one database that vouches
def test_a_collation_hidden_behind_a_planted_oid_operator_vouches_for_nothing(
    engine: sa.Engine,
) -> None:
    """``as_made`` reads the table's own columns and decides on their collation itself,
    not by an ``oid = regclass`` or ``oid = integer`` the search path resolves (which would
    read a decoy table's columns too, made later, so read last): a case-insensitive
    collation given to ``action`` (``UPDATE`` equal to ``update``), and no row is vouched
    for."""
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE COLLATION public.planted_ci"
            " (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
        )
        conn.exec_driver_sql(
            "ALTER TABLE zendesk_audit_logs ALTER COLUMN action TYPE varchar(255)"
            " COLLATE public.planted_ci"
        )
        conn.execute(sa.update(audit_logs).where(audit_logs.c.id == 2).values(action="UPDATE"))
        conn.exec_driver_sql("CREATE TABLE public.planted_decoy (LIKE zendesk_audit_logs)")
        conn.exec_driver_sql(
            "ALTER TABLE public.planted_decoy"
            ' ALTER COLUMN action TYPE varchar(255) COLLATE "default"'
        )
        _plant(conn)
    found, vouched = _walk(engine)
    assert found == {"2": ["action"]}
    assert vouched.isdisjoint({"1", "2"})


def test_a_normalised_text_or_a_time_read_in_the_servers_zone_is_still_found(
    db_url: str,
) -> None:
    """Attempts that hold, kept as guards of the rules' exactness: a text edited to its
    other Unicode normal form (NFC and NFD compare equal under a normalising comparison),
    and on PostgreSQL a database whose default time zone a DBA set to Asia/Kolkata (not
    verify's session's, but what it starts with) with times moved by its offset, so that
    the local time's text is ``raw``'s. Found by the real ``verify``, on every database;
    an untouched row neither found nor, on PostgreSQL, kept from being vouched for."""
    nfd, nfc = "cre\u0301e", "cr\u00e9e"
    audits = [{**AUDITS[0], "id": number} for number in (1, 2, 3, 4)]
    audits[1]["action"], audits[2]["action"] = nfd, nfc
    accesses = [{**ACCESSES[0], "id": "a1"}, {**ACCESSES[0], "id": "a2"}]
    engine = _stored(db_url, audits, accesses)
    shift = timedelta(hours=5, minutes=30)
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                name = engine.url.database
                conn.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Kolkata'")
            edit = sa.update(audit_logs)
            conn.execute(edit.where(audit_logs.c.id == 2).values(action=nfc))
            conn.execute(edit.where(audit_logs.c.id == 3).values(action=nfd))
            conn.execute(edit.where(audit_logs.c.id == 4).values(created_at=AT - shift))
            where = access_logs.c.id == "a2"
            conn.execute(sa.update(access_logs).where(where).values(timestamp=AT - shift))
        engine.dispose()  # new sessions: the database's default time zone
        report = verify_account(engine, "acme", VerifyOptions())
        found = {(finding.record_id, finding.detail.split(": ")[-1]) for finding in report.findings}
        assert found == {
            ("2", "action differs from what its raw gives"),
            ("3", "action differs from what its raw gives"),
            ("4", "created_at differs from what its raw gives"),
            ("a2", "timestamp differs from what its raw gives"),
        }
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Kolkata"
            assert {"1", "a1"} <= _walk(engine)[1]
    finally:
        engine.dispose()


@pytest.mark.databases("postgresql")  # the one database that vouches
def test_a_function_planted_in_public_does_not_write_the_array_verify_compares(
    engine: sa.Engine,
) -> None:
    """The array of a row not vouched for is built by ``json_build_array``: one in
    ``public`` taking the columns' own types is an exact match, taken over pg_catalog's
    (``VARIADIC "any"``), and could write ``update`` where the column holds ``destroy``."""
    with engine.begin() as conn:
        conn.execute(sa.update(audit_logs).where(audit_logs.c.id == 2).values(action="destroy"))
        types = conn.exec_driver_sql(
            "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_catalog.pg_attribute a"
            " WHERE a.attrelid = 'zendesk_audit_logs'::regclass AND a.attname = ANY(%(names)s)"
            " ORDER BY array_position(%(names)s, a.attname::text)",
            {"names": list(derived.AUDIT.columns)},
        ).scalars()
        kinds = [
            "text" if name == "created_at" else kind
            for name, kind in zip(derived.AUDIT.columns, types, strict=True)
        ]
        kinds = [kind.split("(")[0] for kind in kinds]
        args = ", ".join(
            "CASE WHEN $1 = 'destroy' THEN 'update' ELSE $1 END" if i == 1 else f"${i}"
            for i in range(1, len(kinds) + 1)
        )
        conn.exec_driver_sql(
            f"CREATE FUNCTION public.json_build_array({', '.join(kinds)}) RETURNS json"
            f" LANGUAGE sql IMMUTABLE AS $$ SELECT pg_catalog.json_build_array({args}) $$"
        )
    assert _walk(engine)[0] == {"2": ["action"]}


def test_a_big_integral_number_is_either_reading_of_its_record(db_url: str) -> None:
    """An id of 2**53 or more sent as a float (``1e16``) and as an integer
    (``10000000000000000``) is one record to the ledger (its canonical form writes the two
    alike) and to PostgreSQL (jsonb keeps ``1e16`` as the integer); the writer stores the
    float's as NULL, the integer's as it is. So on an untouched store neither is a finding
    (PostgreSQL's float row was reported), NULL where ``raw`` holds the integer is none, and
    any other edit is found; where ``raw`` keeps the float's text (SQLite, MariaDB) the
    integer in its column is found too."""
    big = 10**16
    audits = [{**AUDITS[0], "id": number, "actor_id": float(big)} for number in (1, 2, 3)]
    audits += [{**AUDITS[0], "id": number, "actor_id": big} for number in (4, 5)]
    accesses = [{**ACCESSES[0], "id": "a1", "bytes_sent": float(2**60)}]
    accesses.append({**ACCESSES[0], "id": "a2", "bytes_sent": float(2**60)})
    engine = _stored(db_url, audits, accesses)
    try:
        assert verify_account(engine, "acme", VerifyOptions()).findings == []
        with engine.begin() as conn:
            edit = sa.update(audit_logs)
            conn.execute(edit.where(audit_logs.c.id == 2).values(actor_id=big))  # the int's
            conn.execute(edit.where(audit_logs.c.id == 3).values(actor_id=big + 1))
            conn.execute(edit.where(audit_logs.c.id == 4).values(actor_id=None))  # the float's
            conn.execute(edit.where(audit_logs.c.id == 5).values(actor_id=big - 1))
            where = access_logs.c.id == "a2"
            conn.execute(sa.update(access_logs).where(where).values(bytes_sent=2**60 + 1))
        report = verify_account(engine, "acme", VerifyOptions())
        found = {(finding.record_id, finding.detail.split(": ")[-1]) for finding in report.findings}
        expected = {
            ("3", "actor_id differs from what its raw gives"),
            ("5", "actor_id differs from what its raw gives"),
            ("a2", "bytes_sent differs from what its raw gives"),
        }
        if engine.dialect.name != "postgresql":  # raw's text says float: NULL, exactly
            expected.add(("2", "actor_id differs from what its raw gives"))
        assert found == expected
    finally:
        engine.dispose()
