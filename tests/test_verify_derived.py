"""``verify`` checks the columns derived from ``raw`` (``etl.integrity.checks.derived``):
each one edited alone, on both logs, is a ``modified`` finding naming the record and the
column; a store the job wrote from odd records (bursty, ids out of order, deep JSON,
float ids, texts at their columns' limits, offsets and fractions in times, rejects) has
none. On every database (the fixtures run each test on all three)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from access_support import access_record
from parts.cli import run_cli
from support import audit_record, recent, zendesk_time

from etl.common.errors import ExitCode
from etl.integrity.checks import derived
from etl.records.audit import parse_created_at
from etl.storage.engine import open_engine
from etl.storage.schema.coltypes import sqlite_time
from etl.storage.schema.logs import access_logs, audit_logs
from zendesk_sim import SimulatedZendesk

BOTH = 'streams = ["audit_logs", "access_logs"]'
# Each derived column and a value other than any record here gives it.
AUDIT_EDITS: dict[str, Any] = {
    "action": "update-edited",
    "action_label": "Edited",
    "actor_id": 999_999,
    "actor_name": "Someone Else",
    "change_description": "nothing changed",
    "created_at": datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC),
    "ip_address": "198.51.100.77",
    "source_id": 424_242,
    "source_label": "Another rule",
    "source_type": "edited_type",
    "url": "https://example.com/edited",
}
ACCESS_EDITS: dict[str, Any] = {
    "timestamp": datetime(2001, 2, 3, 4, 5, 6, 250_000, tzinfo=UTC),
    "user_id": "42",
    "ip_address": "198.51.100.77",
    "method": "DELETE",
    "url": "/api/v2/edited.json",
    "path": "/api/v2/edited.json",
    "status": 599,
    "authorization_type": "edited",
    "client": "Edited/1.0",
    "referer": "https://example.com/edited",
    "bytes_sent": 7,
    "category": "edited",
    "summary": "Edited",
    "origin_service": "edited",
    "graphql": {"edited": [1, 2]},
}


def _offset(at: datetime, fraction: str = "") -> str:
    """``at`` written with a +02:00 offset (and ``fraction``)."""
    return (at + timedelta(hours=2)).strftime(f"%Y-%m-%dT%H:%M:%S{fraction}+02:00")


def _wire(at: datetime) -> dict[int, tuple[str, str]]:
    """Records whose JSON text the simulator sends otherwise (it keeps times and ids
    strict itself): record id -> (a part of its text, what is sent instead)."""
    plain = f'"created_at":"{zendesk_time(at)}"'
    return {
        6_100_000_000_005: (plain, f'"created_at":"{_offset(at)}"'),
        6_100_000_000_006: (plain, f'"created_at":"{at.strftime("%Y-%m-%dT%H:%M:%S")}.987z"'),
        6_100_000_000_002: ('"id":6100000000002', '"id":6100000000002.0'),  # a float id
        6_100_000_000_011: (plain, '"created_at":"yesterday"'),
    }


def _send_otherwise(sim: SimulatedZendesk, at: datetime) -> None:
    added = sim._store._added  # the simulator's records as added, each with its text
    for i, stored in enumerate(added.records):
        part, sent = _wire(at).get(stored.record["id"], ("", ""))
        if part:
            assert part in stored.text, stored.text
            added.records[i] = type(stored)(stored.record, stored.text.replace(part, sent))
    for record in sim._access._records:  # serialized as they are sent
        if record["id"] == "01JFRACTION":
            record["timestamp"] = _offset(at, ".123456")


AT = recent(60 * 5)


def _audit_records() -> list[dict[str, Any]]:
    at = AT
    burst = [audit_record(7_000_000_000_000 + i, at) for i in range(30)]  # one second
    spread = [audit_record(6_000_000_000_900 - i, at + timedelta(seconds=i)) for i in range(30)]
    deep: Any = "bottom"
    for _ in range(29):  # 31 levels with the record and its field: the most kept
        deep = {"d": deep}
    odd = [
        audit_record(6_100_000_000_001, at, change_description=deep),  # not a text: NULL
        # float ids below 2**53, as connectors re-emit them (its own id too: _wire)
        audit_record(6_100_000_000_002, at, actor_id=1234.0, source_id=6139157572367.0),
        audit_record(6_100_000_000_003, at, action="a" * 255, ip_address="1" * 64),
        audit_record(6_100_000_000_004, at, change_description="é" * 100_000),
        audit_record(6_100_000_000_005, at),  # its time with an offset (_wire)
        audit_record(6_100_000_000_006, at),  # its time with a fraction and a "z" (_wire)
        audit_record(6_100_000_000_007, at, actor_id=True, source_id="88"),  # NULL, 88
        audit_record(6_100_000_000_008, at, actor_id=2**70, source_id=9007199254740993.0),
        audit_record(6_100_000_000_009, at, action="nul\x00here", actor_name=None),
        audit_record(6_100_000_000_010, at, action="x" * 256),  # a reject
        audit_record(6_100_000_000_011, at),  # a reject: no usable time (_wire)
        audit_record(6_100_000_000_012, at, actor_id=True),  # NULL, all else plain
        audit_record(6_100_000_000_013, at, source_id=9007199254740993.0),  # NULL too
        audit_record(6_100_000_000_014, at, actor_id="abc", source_id=1.5),  # NULL, NULL
    ]
    return burst + spread + odd


def _access_records() -> list[dict[str, Any]]:
    at = AT
    return [access_record(f"01JBURST{i:03d}", at) for i in range(20)] + [
        access_record("01JINT", at, user_id=6596848315901, status=2**40),  # text; NULL
        access_record("01JFRACTION", at),  # its time sent with an offset and a fraction
        access_record("01JLONG", at, url="/" + "p" * 600 + "?q=1"),  # no path: too long
        access_record("01JGRAPHQL", at, url=None, graphql={"b": [1.5, {"a": None}], "a": 2}),
        access_record("01JODD", at, method=7, bytes_sent=12.0, referer="nul\x00"),
        access_record("01JREJECT", at, ip_address="1" * 65),  # a reject: too long
        access_record("01JTEXTS", at, status="ok", bytes_sent=2.5),  # NULL, NULL
    ]


@pytest.fixture
def synced(tmp_path: Path, db_url: str) -> Path:
    with SimulatedZendesk(_audit_records(), access_records=_access_records()) as sim:
        _send_otherwise(sim, AT)
        path = tmp_path / "config.toml"
        path.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
            f'[database]\nurl = "{db_url}"\nauto_migrate = true\n[sync]\n{BOTH}\n'
        )
        path.chmod(0o600)
        result = run_cli("--config", str(path), "--quiet", "sync")
        assert result.returncode == 0, result.stderr
    return path


def _verify(path: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("--config", str(path), "verify", "--json")
    assert "Traceback" not in result.stderr
    assert result.returncode in (ExitCode.OK, ExitCode.FINDINGS) and result.stdout, result.stderr
    (account,) = json.loads(result.stdout)["accounts"]
    return result.returncode, account


def test_a_store_of_odd_records_has_no_finding(synced: Path) -> None:
    code, report = _verify(synced)
    assert (code, report["findings"]) == (ExitCode.OK, []), report
    streams = report["streams"]
    assert streams["audit_logs"]["records_verified"] == len(_audit_records()) - 2
    assert streams["access_logs"]["records_verified"] == len(_access_records()) - 1


def _edit_each(db_url: str, table: sa.Table, edits: dict[str, Any]) -> dict[str, str]:
    """Each column of ``edits`` set on a row of its own: record id -> the column edited."""
    engine = open_engine(db_url)
    edited = {}
    with engine.begin() as conn:
        ids = conn.execute(sa.select(table.c.id).order_by(table.c.stored_seq)).scalars().all()
        for record_id, (column, value) in zip(ids, edits.items(), strict=False):
            conn.execute(sa.update(table).where(table.c.id == record_id).values({column: value}))
            edited[str(record_id)] = column
    engine.dispose()
    assert len(edited) == len(edits)
    return edited


@pytest.mark.parametrize(
    ("table", "edits"), [(audit_logs, AUDIT_EDITS), (access_logs, ACCESS_EDITS)]
)
def test_each_derived_column_edited_alone_is_found_by_id_and_column(
    synced: Path, db_url: str, table: sa.Table, edits: dict[str, Any]
) -> None:
    edited = _edit_each(db_url, table, edits)
    code, report = _verify(synced)
    assert code == ExitCode.FINDINGS
    stream = table.name.removeprefix("zendesk_")
    found = {}
    for finding in report["findings"]:
        assert (finding["kind"], finding["stream"]) == ("modified", stream), finding
        found[finding["record_id"]] = finding["detail"]
    assert found.keys() == edited.keys()
    for record_id, column in edited.items():  # the one column, named
        named = found[record_id].split(": ", 1)[1].split(" differs", 1)[0]
        assert named == column, found[record_id]
    text = run_cli("--config", str(synced), "verify").stdout  # the text report says the same
    for record_id, column in edited.items():
        (line,) = [line for line in text.splitlines() if f"record {record_id}," in line]
        assert line.startswith("INVALID: modified: ") and f": {column} differs" in line, line


def test_a_row_whose_raw_and_column_differ_is_reported_once(synced: Path, db_url: str) -> None:
    """An edited ``raw`` is the finding it was; its columns are not reported again."""
    engine = open_engine(db_url)
    with engine.begin() as conn:
        record_id, raw = conn.execute(
            sa.select(audit_logs.c.id, audit_logs.c.raw).order_by(audit_logs.c.id).limit(1)
        ).one()
        changed = {**raw, "action": "destroy"}
        conn.execute(
            sa.update(audit_logs)
            .where(audit_logs.c.id == record_id)
            .values(raw=changed, actor_id=1)
        )
    engine.dispose()
    code, report = _verify(synced)
    assert code == ExitCode.FINDINGS
    assert [(f["kind"], f["record_id"]) for f in report["findings"]] == [
        ("modified", str(record_id))
    ]
    assert "differs from its ledger entry" in report["findings"][0]["detail"]


def test_a_column_equal_in_python_but_not_as_the_job_stores_it_is_found(
    synced: Path, db_url: str
) -> None:
    """``raw``'s ``true`` gives ``actor_id`` NULL, and a float past 2**53 ``source_id``
    NULL: a column set to ``1`` or to 2**53 equals them in Python (``True == 1``,
    ``9007199254740992.0 == 2**53``), not as the job stores them. Nor does a ``graphql``
    holding ``2.0`` where ``raw`` has ``2`` (equal dicts in Python)."""
    engine = open_engine(db_url)
    graphql = {"b": [1.5, {"a": None}], "a": 2.0}
    with engine.begin() as conn:
        for record_id, values in (
            (6_100_000_000_012, {"actor_id": 1}),
            (6_100_000_000_013, {"source_id": 2**53}),
        ):
            conn.execute(sa.update(audit_logs).where(audit_logs.c.id == record_id).values(values))
        edit = sa.update(access_logs).where(access_logs.c.id == "01JGRAPHQL")
        conn.execute(edit.values(graphql=graphql))
    engine.dispose()
    code, report = _verify(synced)
    assert code == ExitCode.FINDINGS
    assert {(f["record_id"], f["detail"].split(": ", 1)[1]) for f in report["findings"]} == {
        ("6100000000012", "actor_id differs from what its raw gives"),
        ("6100000000013", "source_id differs from what its raw gives"),
        ("01JGRAPHQL", "graphql differs from what its raw gives"),
    }


@pytest.mark.databases("sqlite")  # the others' integer columns refuse or round such values
def test_an_integer_column_set_to_raws_own_odd_value_is_found(synced: Path, db_url: str) -> None:
    """``raw``'s ``"abc"`` or ``1.5`` gives an integer column NULL. SQLite's column keeps
    the text or the real a DBA writes there, which ``json_array`` then writes as ``raw``
    has it: the column is still not what the job stores."""
    engine = open_engine(db_url)
    with engine.begin() as conn:
        audit = sa.update(audit_logs).where(audit_logs.c.id == 6_100_000_000_014)
        conn.execute(audit.values(actor_id="abc", source_id=1.5))
        access = sa.update(access_logs).where(access_logs.c.id == "01JTEXTS")
        conn.execute(access.values(status="ok", bytes_sent=2.5))
        kinds = conn.exec_driver_sql(
            "SELECT typeof(actor_id), typeof(source_id) FROM zendesk_audit_logs "
            "WHERE id = 6100000000014"
        ).one()
    engine.dispose()
    assert tuple(kinds) == ("text", "real")  # what SQLite kept
    code, report = _verify(synced)
    assert code == ExitCode.FINDINGS
    assert {(f["record_id"], f["detail"].split(": ", 1)[1]) for f in report["findings"]} == {
        ("6100000000014", "actor_id, source_id differ from what its raw gives"),
        ("01JTEXTS", "status, bytes_sent differ from what its raw gives"),
    }


@pytest.mark.databases("sqlite")  # the one database whose time column keeps any text
def test_a_time_column_set_to_raws_own_text_in_another_form_is_found(
    synced: Path, db_url: str
) -> None:
    """SQLite's usual row is told by its array's bytes against ``raw``'s fields
    (``checks.usual``): a time sent with an offset or a fraction, its column set to
    that very text, matches them byte for byte, yet is not what the writer stores (its
    time to the second, with a ``Z``): found, as for any other row."""
    engine = open_engine(db_url)
    with engine.begin() as conn:
        for record_id in (6_100_000_000_005, 6_100_000_000_006):
            conn.exec_driver_sql(
                "UPDATE zendesk_audit_logs SET created_at = raw ->> '$.created_at' WHERE id = ?",
                (record_id,),
            )
    engine.dispose()
    code, report = _verify(synced)
    assert code == ExitCode.FINDINGS
    assert {(f["record_id"], f["detail"].split(": ", 1)[1]) for f in report["findings"]} == {
        ("6100000000005", "created_at differs from what its raw gives"),
        ("6100000000006", "created_at differs from what its raw gives"),
    }


@pytest.mark.parametrize("fsp", [0, 6])
def test_a_time_is_compared_as_the_writer_stores_it(fsp: int) -> None:
    """``time_text``'s shortcut for a time as Zendesk writes it gives what the writer's
    own parsing and ``sqlite_time`` give, for real times and for texts that only look
    like one."""
    for value in (
        "2026-12-07T15:08:14Z",
        "0999-01-02T03:04:05Z",
        "2026-02-30T00:00:00Z",  # no such day
        "2026-01-01T24:00:00Z",
        "2026-01-01T23:59:60Z",
        "2026-12-07T15:08:14z",
        "2026-12-07 15:08:14Z",
        "2026-12-07T15:08:14.250000Z",
        "2026-12-07T17:08:14+02:00",
        "2026-12-07T15:08:14",  # no offset: not a usable time
        "\uff12026-12-07T15:08:14Z",
        20261207,
        None,
    ):
        moment = parse_created_at(value)
        want = None if moment is None else sqlite_time(moment, fsp)
        assert derived.time_text(value, fsp) == want, value
