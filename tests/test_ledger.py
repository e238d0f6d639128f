"""The ledger: one canonical hash whatever the database did to the JSON, entries written
with the rows (never updated), existing databases adopted, and no false alarm after a
SIGKILL mid-backfill or a change of scope."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import cli
from parts.verify.signed import config, found, keygen, verify
from support import SIM_OAUTH_TOKEN, audit_record, recent, wait_until

from etl.records import chain
from etl.records.audit import RAW_CANONICAL, RAW_DIGEST, RAW_JSON, parse_record
from etl.records.canonical import canonical_json
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.ledger import record_digest
from etl.storage.schema.integrity import ledger, ledger_head
from etl.storage.schema.logs import audit_logs
from etl.storage.schema.state import audit_rejects, sync_runs
from zendesk_sim import SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"b": 1, "a": "é\n\u0001"}, '{"a":"é\\n\\u0001","b":1}'),
        ({"z": [1.0, 1e16, 1e-05, -0.0, 2.5], "a": {"y": None, "x": True}},
         '{"a":{"x":true,"y":null},"z":[1.0,10000000000000000,0.00001,0.0,2.5]}'),
        ({"big": 2**70, "neg": -(2**63)},
         '{"big":1180591620717411303424,"neg":-9223372036854775808}'),
        ({"\U0001f600": 1, "\ue000": 2}, '{"\ue000":2,"\U0001f600":1}'),  # code points, not UTF-16
    ],
)  # fmt: skip
def test_the_canonical_form_is_the_documented_one(value: object, text: str) -> None:
    assert canonical_json(value) == text
    # The fast path (a record of plain values) and the general one (which a list always
    # takes) write the same.
    assert canonical_json([value]) == "[" + text + "]"


def test_a_record_hashes_the_same_after_its_database_reorders_it(db_url: str) -> None:
    """PostgreSQL's JSONB gives members back in its own order and numbers in its own
    notation; the record's hash must not change."""
    raw = {"zeta": 1, "id": 7, "alpha": "ü", "nested": {"b": 1e16, "a": [0.1, 3]}, "m": 2**62}
    engine = open_engine(db_url)
    migrate.upgrade(engine)
    row: dict[str, Any] = {c.name: None for c in audit_logs.columns}
    row.update(account="a", id=7, raw=raw, synced_at=recent(0), created_at=recent(0), stored_seq=1)
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_logs).values(row))
        text = conn.execute(sa.select(sa.cast(audit_logs.c.raw, sa.Text))).scalar_one()
    engine.dispose()
    from etl.integrity.checks.raw import parse_raw

    assert chain.record_hash(parse_raw(text)) == chain.record_hash(raw)
    assert chain.record_hash(json.loads(text)) == chain.record_hash(raw)


def test_entries_are_written_with_their_rows_and_never_rewritten(
    tmp_path: Path, db_url: str
) -> None:
    end = recent(30)
    with SimulatedZendesk(generate_records(300, start=end - timedelta(days=1), end=end)) as sim:
        path = config(tmp_path, sim, db_url, None)
        assert cli(path, "sync").returncode == 0
        engine = open_engine(db_url)
        with engine.connect() as conn:
            first = conn.execute(sa.select(ledger).order_by(ledger.c.entry)).all()
        sim.add_records([audit_record(9_300_000_000_000, recent(8))])
        assert cli(path, "sync").returncode == 0
        with engine.connect() as conn:
            after = conn.execute(sa.select(ledger).order_by(ledger.c.entry)).all()
            head = conn.execute(sa.select(ledger_head.c.entries, ledger_head.c.head)).one()
            seqs = dict(conn.execute(sa.select(audit_logs.c.id, audit_logs.c.stored_seq)).all())
        engine.dispose()
    assert len(first) == 300 and after[:300] == first  # appended to, never rewritten
    assert len(after) == 301 and (after[-1].record_id, after[-1].kind) == ("9300000000000", "R")
    assert after[-1].stored_seq == seqs[9_300_000_000_000]
    assert (head.entries, head.head) == (301, after[-1].entry_hash.hex())
    # Each entry's hash is the documented function of the one before it.
    previous = chain.genesis("acme")
    for e in after:
        record = bytes(e.record_hash)
        previous = chain.entry_hash(previous, e.entry, e.kind, e.stored_seq, e.record_id, record)
        assert previous == e.entry_hash


def test_an_existing_database_is_adopted_by_the_migration(tmp_path: Path, db_url: str) -> None:
    engine = open_engine(db_url)
    migrate.upgrade(engine, "0005")
    row: dict[str, Any] = {c.name: None for c in audit_logs.columns}
    with engine.begin() as conn:
        key = conn.execute(
            sa.insert(sync_runs).values(account="acme", started_at=recent(5), status="success")
        ).inserted_primary_key
        assert key is not None
        run_id = key[0]
        for seq, record_id in enumerate((30, 10, 20), start=1):
            # the row as that release's writer stored it: its columns derived from raw
            stored = parse_record(audit_record(record_id, recent(60)), "acme", recent(1))
            assert isinstance(stored, dict)
            values = {k: v for k, v in stored.items() if k in row}
            conn.execute(sa.insert(audit_logs).values({**row, **values, "stored_seq": seq}))
        conn.execute(sa.insert(audit_rejects).values(account="acme", run_id=run_id,
            record_id="x", reason="no id", raw="{}", rejected_at=recent(1)))  # fmt: skip
    migrate.upgrade(engine)
    with engine.connect() as conn:
        entries = conn.execute(sa.select(ledger).order_by(ledger.c.entry)).all()
    engine.dispose()
    assert [(e.kind, e.record_id) for e in entries] == [
        ("A", None),
        ("R", "30"),
        ("R", "10"),
        ("R", "20"),
        ("X", "x"),
    ]
    assert entries[0].note.startswith("adopted at ") and "not as written" in entries[0].note
    path = tmp_path / "config.toml"
    path.write_text(f'[zendesk]\nsubdomain = "acme"\n[database]\nurl = "{db_url}"\n')
    code, report = verify(path)
    assert code == 0, report
    assert report["summary"] == "0/0 checkpoints valid, 3 records verified, 0 findings"
    assert report["accounts"][0]["notes"] == ["entries 1 to 5: unsigned"]
    engine = open_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.update(audit_logs).where(audit_logs.c.id == 10).values(raw={"id": 10}))
    engine.dispose()
    code, report = verify(path)
    assert code == 1 and found(report) == {("modified", "10")}


UNPACED = "requests_per_minute = 100000"


def test_no_false_alarm_after_a_sigkill_mid_backfill_and_a_scope_change(
    tmp_path: Path, db_url: str
) -> None:
    end = recent(30)
    # 120 pages: killed after 20, the run has 100 to go (2.4 s at least at 2,500 a minute,
    # the margin for the kill to land on a busy host). 20,000 records were more of the same
    # after the kill: on a busy MariaDB 25 s.
    records = generate_records(12_000, start=end - timedelta(days=2), end=end, seed=3)
    key, public = keygen(tmp_path, "ledger.key")
    with SimulatedZendesk(records, latency=0.02, rate_limit_per_minute=1_000_000) as sim:
        path = config(tmp_path, sim, db_url, key)
        command = [sys.executable, "-m", "etl", "--config", str(path), "--quiet", "sync"]
        env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
        engine = open_engine(db_url)

        def entries() -> int:
            try:
                with engine.connect() as conn:
                    return int(
                        conn.execute(sa.select(sa.func.count()).select_from(ledger)).scalar_one()
                    )
            except sa.exc.DBAPIError:  # the table not created yet
                return 0

        wait_until(lambda: proc.poll() is not None or entries() >= 2000, "2,000 entries committed")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL  # killed mid-run, not finished
        engine.dispose()
        # What follows runs in process and its subject is the ledger, not the pace: answered
        # at once and unpaced (two whole reads of 80 pages, 24 ms apart at 2,500 a minute).
        sim.latency = 0.0
        path.write_text(path.read_text().replace("requests_per_minute = 2500", UNPACED))
        code, report = verify(path, "--public-key", str(public))
        assert code == 0, report  # what committed verifies; the tail is said unanchored
        assert cli(path, "sync").returncode == 0
        # A change of scope: the watermark restarts, everything is read again, unchanged.
        with path.open("a") as out:
            out.write('[sync]\nfilters = { action = ["create", "update", "destroy", "login"] }\n')
        assert cli(path, "sync").returncode == 0
        code, report = verify(path)
        assert code == 0, report
        assert report["accounts"][0]["notes"] == []
        assert report["accounts"][0]["records_verified"] == len(sim.visible_records())


@pytest.mark.parametrize(
    "fields",
    [
        {"actor_name": "Zoë 😀", "change_description": 'Quote " \\ \t\n\u0001\u007f\u2028'},
        {"\U0001f600": 1, "\ue000": 2, "zz": None, "aa": True},  # keys by code point
        {"actor_id": 2**70},  # an integer orjson refuses: the json module writes it
        {"score": 1.5, "tags": ["a", {"b": None}]},  # floats and nesting: not plain
        {"actor_name": "nul \u0000 and lone \ud800"},  # altered before storing
    ],
)
def test_a_row_is_hashed_as_its_canonical_json_whatever_text_it_is_stored_as(
    fields: dict[str, Any],
) -> None:
    """The writer hashes the stored text itself when it is the canonical form (a record of
    plain values, keys sorted): the same digest as the canonical JSON of what is stored."""
    row = parse_record(audit_record(61, recent(5), **fields), "acme", recent(0))
    assert isinstance(row, dict)
    assert record_digest(row) == chain.record_hash(row["raw"])
    plain = all(type(v) in (str, int, bool, type(None)) for v in fields.values())
    if RAW_JSON in row and plain:
        assert row[RAW_JSON] == canonical_json(row["raw"])  # stored as its canonical text
    # The parser's word that the text is canonical (the writer hashes it on that alone):
    # given exactly for those, never for a record it altered or one of floats or nesting.
    assert (row.get(RAW_CANONICAL) is True) == (RAW_JSON in row and plain)
    # and its hash of that text, which the writer takes as the record hash: made for those
    # alone, and the canonical JSON's hash
    assert (RAW_DIGEST in row) == (row.get(RAW_CANONICAL) is True)
    if RAW_DIGEST in row:
        assert row[RAW_DIGEST] == chain.record_hash(row["raw"])


def test_entries_keep_texts_that_need_escaping(db_url: str) -> None:
    """The entries are written in a form made by the ledger (PostgreSQL's binary COPY,
    MySQL's literals): an account name and reject ids holding a quote, a backslash, a tab,
    a newline, a percent sign or non-ASCII text, or no id at all, are stored as they are,
    and chain; their time, in each database's form of it, is the writer's."""
    from etl.records.audit import Reject
    from etl.storage.store import Store

    account = "o'brien\\%s"
    odd_ids = ["a\tb", "back\\slash", "new\nline", "quo'te\"", "100%s", "ü²", "\\N", "007", None]
    written = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    engine = open_engine(db_url)
    migrate.upgrade(engine)
    store = Store(engine, now=lambda: written)
    run_id = store.start_run(account, recent(5), recent(0), None)
    rows = [parse_record(audit_record(i, recent(60)), account, recent(0)) for i in (5, 6)]
    rejects = [Reject(record_id, "no usable created_at", "{}") for record_id in odd_ids]
    with store.transaction() as transaction:
        transaction.write_batch(account, run_id, rows, rejects)  # type: ignore[arg-type]
    with engine.connect() as conn:
        entries = conn.execute(sa.select(ledger).order_by(ledger.c.entry)).all()
        head = conn.execute(sa.select(ledger_head.c.head)).scalar_one()
    engine.dispose()
    assert [e.account for e in entries] == [account] * 11
    assert [e.record_id for e in entries] == ["5", "6", *odd_ids]
    assert [e.written_at for e in entries] == [written] * 11
    previous = chain.genesis(account)
    for e in entries:
        record = bytes(e.record_hash)
        previous = chain.entry_hash(previous, e.entry, e.kind, e.stored_seq, e.record_id, record)
        assert previous == e.entry_hash
    assert head == previous.hex()


def test_a_transactions_entries_chain_in_order_however_many_are_kept_before_the_insert(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer keeps a transaction's entries for one insert before the commit, and
    inserts them earlier past a limit (here 4): rows and rejects of several batches are
    still numbered in the order written, chain, and the head is the last one's; a second
    transaction chains onto it."""
    from etl.records.audit import Reject
    from etl.storage import ledger as ledger_writer
    from etl.storage.store import Store

    monkeypatch.setattr(ledger_writer, "_PENDING", 4)
    engine = open_engine(db_url)
    migrate.upgrade(engine)
    store = Store(engine)
    run_id = store.start_run("acme", recent(5), recent(0), None)
    ids = iter(range(100, 200))
    expected = []
    for batches in (3, 2):
        with store.transaction() as transaction:
            for _ in range(batches):
                rows = [parse_record(audit_record(next(ids), recent(60)), "acme", recent(0))
                        for _ in range(3)]  # fmt: skip
                reject = Reject(f"bad{next(ids)}", "no usable created_at", "{}")
                transaction.write_batch("acme", run_id, rows, [reject])  # type: ignore[arg-type]
                expected += [str(row["id"]) for row in rows] + [reject.record_id]  # type: ignore[index]
    with engine.connect() as conn:
        entries = conn.execute(sa.select(ledger).order_by(ledger.c.entry)).all()
        head = conn.execute(sa.select(ledger_head.c.entries, ledger_head.c.head)).one()
    engine.dispose()
    assert [e.entry for e in entries] == list(range(1, 21))
    assert [e.record_id for e in entries] == expected
    assert [e.kind for e in entries] == ([chain.ROW] * 3 + [chain.REJECT]) * 5
    previous = chain.genesis("acme")
    for e in entries:
        record = bytes(e.record_hash)
        previous = chain.entry_hash(previous, e.entry, e.kind, e.stored_seq, e.record_id, record)
        assert previous == e.entry_hash
    assert (head.entries, head.head) == (20, previous.hex())
