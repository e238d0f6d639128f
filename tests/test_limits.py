"""One record that a database cannot hold never stops the log (issue 12.1).

A value longer than its column, a record too big for MariaDB's packet, or any value the
database refuses: the record goes to ``zendesk_audit_rejects`` with the reason, every
other record of the page is stored, the run succeeds and the watermark moves. Before,
one such record made every run fail with exit 6 on PostgreSQL and MariaDB, forever.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.configs import write_config
from parts.simulators import Simulators
from support import (
    SIM_OAUTH_TOKEN,
    assert_table_matches,
    audit_record,
    fresh_store,
    parse_zendesk_time,
    recent,
    stored_rows,
)

from etl.cli import main as cli
from etl.records.audit import Reject, parse_record
from etl.storage.engine import open_engine
from etl.storage.limits import (
    byte_batches,
    literal_size,
    row_size,
    savepoint,
    storable_reject,
)
from zendesk_sim import SimulatedZendesk

RECORDS = 201
MB = 1024 * 1024


@pytest.fixture
def sim(make_sim: Simulators) -> SimulatedZendesk:
    return make_sim(count=RECORDS, days=2 / 24)


def sync(tmp_path: Path, sim: SimulatedZendesk, db_url: str, monkeypatch: Any) -> int:
    """``etl sync`` as a user runs it (in process); its exit code."""
    config = write_config(
        tmp_path,
        db_url,
        sim.url,
        zendesk={"retry_budget": "3s", "timeout": "10s"},
        sync={"overlap": "1d"},
        database={"auto_migrate": True},
    )
    monkeypatch.setenv("ZENDESK_OAUTH_TOKEN", SIM_OAUTH_TOKEN)
    return cli.main(["--config", str(config), "--quiet", "sync"])


def rejects(db_url: str) -> list[dict[str, Any]]:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            table = sa.Table("zendesk_audit_rejects", sa.MetaData(), autoload_with=conn)
            return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(table.c.id))]
    finally:
        engine.dispose()


def odd_among(sim: SimulatedZendesk, *odd: dict[str, Any]) -> datetime:
    """Add ``odd`` records (made in the middle of the history); the newest record's time."""
    sim.add_records(list(odd))
    return parse_zendesk_time(sim.visible_records()[-1]["created_at"])


# -- values longer than their column ----------------------------------------------------------
def test_a_value_longer_than_its_column_rejects_the_record_on_every_database(
    db_url: str, sim: SimulatedZendesk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 102-character ip_address, a 300-character action, a 256-character source_type:
    each made every run exit 6 on PostgreSQL and MariaDB; SQLite stored them. Now all
    three keep the same records and reject the same ones, naming the field."""
    moment = parse_zendesk_time(sim.visible_records()[RECORDS // 2]["created_at"])
    long_ip = audit_record(6_150_000_000_001, moment, ip_address="2001:db8::1," * 8 + "x" * 6)
    long_action = audit_record(6_150_000_000_002, moment, action="a" * 300)
    long_type = audit_record(6_150_000_000_003, moment, source_type="\u00e9" * 256)
    # the longest that fit, in characters (an emoji is one, whatever its bytes)
    fits = audit_record(6_150_000_000_004, moment, ip_address="\U0001f600" * 64)
    newest = odd_among(sim, long_ip, long_action, long_type, fits)
    assert len(long_ip["ip_address"]) == 102

    assert sync(tmp_path, sim, db_url, monkeypatch) == 0
    odd = {long_ip["id"], long_action["id"], long_type["id"]}
    good = [r for r in sim.visible_records() if r["id"] not in odd]
    assert_table_matches(db_url, good)
    assert [(r["record_id"], r["reason"]) for r in rejects(db_url)] == [
        ("6150000000001", "ip_address has 102 characters, the column holds 64"),
        ("6150000000002", "action has 300 characters, the column holds 255"),
        ("6150000000003", "source_type has 256 characters, the column holds 255"),
    ]
    assert json.loads(rejects(db_url)[0]["raw"]) == long_ip
    store = fresh_store(db_url)
    (status,) = store.account_status("acme")
    assert status.rejects == 3
    assert status.last_run is not None and status.last_run.status == "success"
    assert (status.last_run.rows_inserted, status.last_run.rows_rejected) == (RECORDS + 1, 3)
    assert status.watermark is not None and status.watermark >= newest - timedelta(minutes=1)

    # the next run (a day's overlap: it reads them all again) stores nothing twice
    assert sync(tmp_path, sim, db_url, monkeypatch) == 0
    assert_table_matches(db_url, good)
    (status,) = store.account_status("acme")
    assert status.last_run is not None
    assert (status.last_run.rows_inserted, status.last_run.rows_updated) == (0, 0)


def test_lengths_are_counted_in_characters_and_come_from_the_table() -> None:
    now = datetime.now(UTC)
    at = recent(5)
    assert isinstance(parse_record(audit_record(1, at, ip_address="9" * 64), "a", now), dict)
    rejected = parse_record(audit_record(1, at, ip_address="9" * 65), "a", now)
    assert isinstance(rejected, Reject)
    assert rejected.reason == "ip_address has 65 characters, the column holds 64"
    assert isinstance(parse_record(audit_record(1, at, action="\u00e9" * 255), "a", now), dict)
    # unbounded columns take any length
    assert isinstance(parse_record(audit_record(1, at, actor_name="n" * 100_000), "a", now), dict)


# -- a record too big for MariaDB's packet -----------------------------------------------------
def test_a_record_of_several_megabytes_is_stored_where_it_fits_and_rejected_where_not(
    db_url: str, sim: SimulatedZendesk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 9 MB change_description (18 MB with raw): MariaDB's 16 MB max_allowed_packet made
    every run fail ("server has gone away"). SQLite and PostgreSQL store it; MariaDB keeps
    it as a reject, its raw whole, and stores the other records."""
    moment = parse_zendesk_time(sim.visible_records()[RECORDS // 2]["created_at"])
    text = ("line 'quoted' \"and\" \\ back\n" * (9 * MB // 28))[: 9 * MB]
    big = audit_record(6_150_000_000_010, moment, change_description=text)
    odd_among(sim, big)

    assert sync(tmp_path, sim, db_url, monkeypatch) == 0
    served = sim.visible_records()
    found = rejects(db_url)
    if db_url.startswith("mysql"):
        assert_table_matches(db_url, [r for r in served if r["id"] != big["id"]])
        (reject,) = found
        assert reject["record_id"] == str(big["id"])
        assert "max_allowed_packet" in reject["reason"], reject["reason"]
        assert json.loads(reject["raw"]) == big
    else:
        assert_table_matches(db_url, served)
        assert found == []
    assert sync(tmp_path, sim, db_url, monkeypatch) == 0  # and again: nothing twice
    (status,) = fresh_store(db_url).account_status("acme")
    assert status.last_run is not None and status.last_run.rows_inserted == 0


def test_a_record_bigger_than_the_packet_is_kept_truncated_as_a_reject(db_url: str) -> None:
    """17 MB of text: on MariaDB (16 MB packet) neither the row nor the whole raw fit in a
    statement; the reject keeps the start of raw and says how big it was. SQLite and
    PostgreSQL store the record."""
    store = fresh_store(db_url)
    at = recent(60)
    huge = audit_record(8, at, change_description="z" * (17 * MB))
    rows = [parse_record(r, "acme", datetime.now(UTC)) for r in (audit_record(9, at), huge)]
    run_id = store.start_run("acme", at - timedelta(hours=1), at, None)
    result = store.write_page("acme", run_id, rows, [], at)  # type: ignore[arg-type]
    if not db_url.startswith("mysql"):
        assert (result.inserted, result.rejected) == (2, 0)
        return
    assert (result.inserted, result.rejected) == (1, 1)
    (reject,) = rejects(db_url)
    assert reject["record_id"] == "8"
    assert "max_allowed_packet" in reject["reason"]
    assert "; raw truncated to its first " in reject["reason"]
    assert reject["reason"].endswith(f" of {len(json.dumps(huge, sort_keys=True))} bytes")
    assert json.dumps(huge, sort_keys=True).startswith(reject["raw"])
    assert [row["id"] for row in stored_rows(db_url)] == [9]
    assert store.watermark("acme") == at


def test_a_reject_too_big_for_the_packet_keeps_a_truncated_raw_saying_so() -> None:
    raw = json.dumps({"id": 1, "change_description": "x" * (2 * MB)})
    cut = storable_reject(Reject("1", "too big", raw), packet=MB)
    assert cut.reason == f"too big; raw truncated to its first {len(cut.raw)} of {len(raw)} bytes"
    assert raw.startswith(cut.raw) and literal_size(cut.raw) < MB
    assert storable_reject(Reject("1", "small", "{}"), packet=MB) == Reject("1", "small", "{}")
    assert storable_reject(Reject("1", "any", raw), packet=None).raw == raw


def test_batches_are_sized_by_bytes() -> None:
    rows = [{"id": i, "raw": {}, "t": "x" * size} for i, size in enumerate([10, 10, 100, 5, 5])]
    sizes = [[row["id"] for row in batch] for batch in byte_batches(rows, 120)]
    assert sizes == [[0, 1], [2], [3, 4]]
    # a small row's size is a bound, never less than the exact size
    odd = audit_record(1, recent(5), actor_name="\U0001f600'\n\\" * 100, url='\u00e9"' * 100)
    row = parse_record(odd, "acme", datetime.now(UTC))
    assert isinstance(row, dict)
    exact = row_size({k: v for k, v in row.items() if k != "raw_json"})
    assert exact <= row_size(row) <= 64 * 1024


# -- any other value the database refuses ------------------------------------------------------
def test_a_value_the_database_refuses_is_isolated_and_the_rest_commits(db_url: str) -> None:
    """Defence in depth: a row that slipped past parse_record's checks (here a 102-character
    ip_address made by hand) once failed the whole transaction on PostgreSQL and MariaDB.
    The batch is halved until the row is found; it becomes a reject with the database's
    reason, and the batches before it in the same transaction commit too."""
    store = fresh_store(db_url)
    at = recent(60)
    now = datetime.now(UTC)
    run_id = store.start_run("acme", at - timedelta(hours=1), at, None)
    rows = []
    for i in range(1, 41):
        row = parse_record(audit_record(i, at + timedelta(seconds=i)), "acme", now)
        assert isinstance(row, dict)
        rows.append(row)
    for at_index in (17, 33):  # in different halves of the second batch
        odd = dict(rows[at_index], ip_address="9" * 102)
        odd.pop("raw_json", None)
        rows[at_index] = odd
    with store.transaction() as transaction:
        first = transaction.write_batch("acme", run_id, rows[:10], [])
        second = transaction.write_batch("acme", run_id, rows[10:], [], watermark=at)
    assert first.inserted == 10
    engine = open_engine(db_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT id FROM zendesk_audit_logs ORDER BY id")).scalars()
        ids = list(stored)
    engine.dispose()
    if db_url.startswith("sqlite"):  # SQLite holds text of any length: stored as it came
        assert (second.inserted, second.rejected) == (30, 0)
        assert ids == list(range(1, 41))
        return
    assert (second.inserted, second.rejected) == (28, 2)
    assert ids == [i for i in range(1, 41) if i not in (18, 34)]
    found = rejects(db_url)
    assert [r["record_id"] for r in found] == ["18", "34"]
    for reject in found:
        assert reject["reason"].startswith("the database refused it: ")
        assert "too long" in reject["reason"].lower()
        assert "\n" not in reject["reason"] and len(reject["reason"]) < 400
        assert json.loads(reject["raw"])["id"] == int(reject["record_id"])
    assert store.watermark("acme") == at
    (status,) = store.account_status("acme")
    assert status.rejects == 2
    assert status.last_run is not None and status.last_run.rows_rejected == 2


def test_a_failed_savepoint_undoes_only_its_own_writes(db_url: str) -> None:
    """The savepoint around each upsert (sent as plain SQL, not ``begin_nested``): a block
    that raises leaves none of its writes, the error goes on, the writes before it stay,
    and the transaction goes on to take another savepoint of the same name and commit."""
    fresh_store(db_url)
    engine = open_engine(db_url)
    seq = sa.Table("zendesk_audit_store_seq", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(seq.insert(), {"account": "before", "last_seq": 1})
        with pytest.raises(ValueError, match="refused"), savepoint(conn):
            conn.execute(seq.insert(), {"account": "undone", "last_seq": 2})
            raise ValueError("refused")
        with savepoint(conn):
            conn.execute(seq.insert(), {"account": "after", "last_seq": 3})
    with engine.connect() as conn:
        kept = conn.execute(sa.select(seq.c.account, seq.c.last_seq).order_by(seq.c.last_seq))
        assert [tuple(r) for r in kept] == [("before", 1), ("after", 3)]
    engine.dispose()


# -- created_at's second ---------------------------------------------------------------------
def test_created_at_is_kept_to_the_second_and_raw_exactly(db_url: str) -> None:
    """Documented: the column holds the whole second on every database, raw the exact text."""
    store = fresh_store(db_url)
    at = recent(60)
    record = {**audit_record(7, at), "created_at": at.strftime("%Y-%m-%dT%H:%M:%S.750Z")}
    row = parse_record(record, "acme", datetime.now(UTC))
    assert isinstance(row, dict)
    run_id = store.start_run("acme", at - timedelta(hours=1), at, None)
    store.write_page("acme", run_id, [row], [], None)
    (stored,) = stored_rows(db_url)
    created = stored["created_at"]
    assert (created.replace(tzinfo=UTC) if created.tzinfo is None else created) == at
    assert stored["raw"]["created_at"].endswith(f":{at.second:02d}.750Z")
