"""``export``: storage order, positions per consumer, the file cut back, ``--since``."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.exports import T0, export, record, run_export, store_records, without_seq
from support import fresh_store

from etl.common.clock import utc_now
from etl.common.errors import ConfigError, InterruptedRun, LockedError
from etl.export import backlogs
from etl.export.job import ExportOptions, export_accounts


def test_records_come_out_in_storage_order_late_ones_included(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    first = [record(i, minutes=i) for i in range(1, 6)]
    store_records(store, first)
    assert export(store, out) == [{**r, "account": "acme"} for r in first]
    # a late record: created before everything exported, stored after
    late = record(99, minutes=-60, actor_name="Zoë 😀")
    store_records(store, [record(6, minutes=6), late])
    assert [line["id"] for line in export(store, out)] == [6, 99]
    assert export(store, out) == []  # nothing new: nothing written
    lines = without_seq([json.loads(line) for line in out.read_text("utf-8").splitlines()])
    assert [line["id"] for line in lines] == [1, 2, 3, 4, 5, 6, 99]
    assert lines[-1] == {**late, "account": "acme"}


def test_a_changed_record_is_exported_again_an_unchanged_one_not(
    db_url: str, tmp_path: Path
) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1), record(2)])
    export(store, out)
    store_records(store, [record(1), record(2, change_description="edited")])
    assert export(store, out) == [{**record(2, change_description="edited"), "account": "acme"}]


def test_each_consumer_has_its_own_position(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    store_records(store, [record(1), record(2)])
    assert len(export(store, tmp_path / "a.jsonl", "a")) == 2
    store_records(store, [record(3)])
    assert len(export(store, tmp_path / "b.jsonl", "b")) == 3
    assert [line["id"] for line in export(store, tmp_path / "a.jsonl", "a")] == [3]
    with store.engine.connect() as conn:
        found = {(s.consumer, s.position, s.backlog) for s in backlogs.statuses(conn)}
    store_records(store, [record(4)])
    with store.engine.connect() as conn:
        behind = {(s.consumer, s.backlog) for s in backlogs.statuses(conn)}
    assert {(c, b) for c, _, b in found} == {("a", 0), ("b", 0)}
    assert behind == {("a", 1), ("b", 1)}


def test_bytes_of_an_export_that_did_not_commit_are_cut_off(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1), record(2)])
    export(store, out)
    committed = out.read_bytes()
    with out.open("ab") as handle:  # what a run killed between its write and commit leaves
        handle.write(b'{"id": 3, "half a li')
    store_records(store, [record(3)])
    run_export(store, out)
    lines = out.read_bytes().splitlines()
    assert out.read_bytes().startswith(committed)
    assert [json.loads(line)["id"] for line in lines] == [1, 2, 3]


def test_a_file_shorter_than_committed_is_appended_to(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1)])
    export(store, out)
    out.write_bytes(b"")  # rotated by copytruncate
    store_records(store, [record(2)])
    export(store, out)
    assert [json.loads(line)["id"] for line in out.read_bytes().splitlines()] == [2]


def test_since_shapes_only_the_first_export(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1, minutes=0), record(2, minutes=10), record(3, minutes=20)])
    since = T0 + timedelta(minutes=10)
    assert [line["id"] for line in export(store, out, since=since)] == [2, 3]
    store_records(store, [record(4, minutes=-30)])  # older, stored later: not skipped
    assert [line["id"] for line in export(store, out, since=since)] == [4]


def test_since_with_nothing_after_it_still_moves_the_position(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1), record(2)])
    assert export(store, out, since=T0 + timedelta(days=1)) == []
    with store.engine.connect() as conn:
        (status,) = backlogs.statuses(conn)
    assert status.backlog == 0


def test_chunks_commit_one_by_one(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(i) for i in range(1, 12)])
    assert len(export(store, out, chunk_rows=4)) == 11
    store_records(store, [record(i) for i in range(12, 16)])
    assert [line["id"] for line in export(store, out, chunk_rows=4)] == [12, 13, 14, 15]


def test_several_accounts_into_one_file(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1)], account="acme")
    store_records(store, [record(1), record(2)], account="sandbox")
    lines = export(store, out, accounts=("acme", "sandbox"))
    assert [(line["account"], line["id"]) for line in lines] == [
        ("acme", 1), ("sandbox", 1), ("sandbox", 2)
    ]  # fmt: skip
    with out.open("ab") as handle:
        handle.write(b"torn")
    store_records(store, [record(2)], account="acme")
    run_export(store, out, accounts=("acme", "sandbox"))
    lines = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert [(line["account"], line["id"]) for line in lines][-2:] == [("sandbox", 2), ("acme", 2)]


def test_a_stop_request_ends_between_chunks(db_url: str, tmp_path: Path) -> None:
    """SIGTERM's event: the chunk being written commits, nothing after it is written (on
    the servers the reads run ahead in a thread, which stops too), the next run goes on."""
    store = fresh_store(db_url)
    store_records(store, [record(i) for i in range(1, 10)])
    stop = threading.Event()
    commits: list[datetime] = []

    def now() -> datetime:  # called for each commit: the new file's length, then chunks
        commits.append(utc_now())
        if len(commits) == 2:
            stop.set()  # a signal while the first chunk commits
        return commits[-1]

    out = tmp_path / "feed.jsonl"
    with pytest.raises(InterruptedRun):
        export_accounts(
            store.engine, ["acme"], ExportOptions("siem", out, chunk_rows=4), stop=stop, now=now
        )  # fmt: skip
    assert [json.loads(line)["id"] for line in out.read_bytes().splitlines()] == [1, 2, 3, 4]
    assert [line["id"] for line in export(store, out, chunk_rows=4)] == [5, 6, 7, 8, 9]
    stop.set()  # before the first chunk: nothing is read or written
    store_records(store, [record(10)])
    with pytest.raises(InterruptedRun):
        export_accounts(
            store.engine, ["acme"], ExportOptions("siem", out, chunk_rows=4), stop=stop,
            now=utc_now,
        )  # fmt: skip
    assert len(out.read_bytes().splitlines()) == 9


def test_one_export_per_consumer_at_a_time(sqlite_url: str, tmp_path: Path) -> None:
    from etl.storage.locking.lock import run_lock

    store = fresh_store(sqlite_url)
    store_records(store, [record(1)])
    with (
        run_lock(store.engine, "siem", namespace="export"),
        pytest.raises(LockedError, match="consumer siem"),
    ):
        export(store, tmp_path / "feed.jsonl")
    assert len(export(store, tmp_path / "other.jsonl", "other")) == 1


@pytest.mark.parametrize("name", ["", "a b", "-x", "x" * 65, "a/b"])
def test_consumer_names_are_checked(sqlite_url: str, tmp_path: Path, name: str) -> None:
    store = fresh_store(sqlite_url)
    with pytest.raises(ConfigError, match="consumer name"):
        export(store, tmp_path / "feed.jsonl", name)


def test_a_run_with_nothing_new_does_one_query(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    store_records(store, [record(1)])
    out = tmp_path / "feed.jsonl"
    export(store, out)
    statements: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    export(store, out)
    # the consumer's lock takes statements of its own on PostgreSQL and MySQL (SQLite: a
    # file), and its write epoch (zendesk_audit_owners); what reads the tables is one query
    data = [s for s in statements if "zendesk_audit_" in s and "zendesk_audit_owners" not in s]
    assert len(data) == 1, statements


def test_exports_running_while_rows_are_stored_miss_nothing(db_url: str, tmp_path: Path) -> None:
    """The store sequence's promise: a number committed later is never below one an
    export has already passed. A writer stores batches (late records among them) while
    exports run back to back; at the end the file is the table, once, in storage order."""
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    done = threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for batch in range(40):
                base = 1 + batch * 50
                store_records(store, [record(base + i, minutes=-batch) for i in range(50)])
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        run_export(store, out, chunk_rows=30)
    writer.join()
    run_export(store, out, chunk_rows=30)
    assert not failures
    with store.engine.connect() as conn:
        expected = conn.execute(
            sa.text("SELECT id FROM zendesk_audit_logs WHERE account = 'acme' ORDER BY stored_seq")
        ).scalars()
        stored = list(expected)
    lines = without_seq([json.loads(line) for line in out.read_bytes().splitlines()])
    assert [line["id"] for line in lines] == stored and len(stored) == 2000


def test_gaps_in_the_numbers_are_passed_over(db_url: str, tmp_path: Path) -> None:
    """Records read again unchanged take numbers that no row keeps: a run of them wider
    than a query's range of numbers is crossed, and the rows after it come out."""
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    same = [record(i) for i in range(1, 31)]
    store_records(store, same)
    assert len(export(store, out, chunk_rows=2)) == 30
    for _ in range(3):
        store_records(store, same)  # 90 numbers taken, none kept
    store_records(store, [record(31)])
    assert [line["id"] for line in export(store, out, chunk_rows=2)] == [31]
    with store.engine.connect() as conn:
        (status,) = backlogs.statuses(conn)
    assert (status.position, status.backlog) == (121, 0)


def test_raw_lines_are_the_stored_text_with_account_and_stored_seq_added(
    db_url: str, tmp_path: Path
) -> None:
    """Byte for byte: the record as stored (PostgreSQL: JSONB's text), never re-encoded,
    with our two keys spliced in at its end; a record holding either key is decoded and
    ours win."""
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    plain = [record(1), record(2, actor_name='Zoë 😀 "q" \\ \t'), record(3, actor_id=2**70)]
    store_records(store, [*plain, record(4, account="other", stored_seq=0)])
    run_export(store, out, chunk_rows=2)
    raw = "raw::text" if store.engine.dialect.name == "postgresql" else "raw"
    with store.engine.connect() as conn:
        stored = conn.execute(
            sa.text(f"SELECT id, stored_seq, {raw} FROM zendesk_audit_logs ORDER BY stored_seq")
        ).all()
    lines = out.read_bytes().splitlines(keepends=True)
    assert len(lines) == len(stored) == 4
    for (_, seq, text), line in zip(stored[:3], lines[:3], strict=True):
        text = text if isinstance(text, str) else text.decode()
        assert line == f'{text[:-1]},"account":"acme","stored_seq":{seq}}}\n'.encode()
    assert json.loads(lines[3]) == {**record(4), "account": "acme", "stored_seq": stored[3][1]}
