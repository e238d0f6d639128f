"""``export --streams``: the access log to the same consumers as the audit log, each stream
with its own position, on all three databases."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from jsonschema import Draft202012Validator
from parts.cli import one_error_line, run_cli
from parts.configs import write_config
from parts.exports import T0, access, record, run_export, store_access, store_records
from parts.ocsf import SCHEMA
from support import fresh_store

from etl.cli.metrics import render_export
from etl.common.clock import utc_now
from etl.common.errors import ConfigError
from etl.export.backlogs import ConsumerStatus, ExportStatuses, statuses
from etl.export.consumers import read_start, save
from etl.export.read import raw_line

BOTH = ("audit_logs", "access_logs")


def lines(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_bytes().splitlines()] if out.exists() else []


def ids(found: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    return [(line.get("stream", "audit_logs"), line["id"]) for line in found]


def test_both_streams_each_once_with_their_own_positions(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1), record(2)])
    store_access(store, [access(1), access(2, graphql="query { a }", url=None)])
    store_records(store, [record(3)])
    run_export(store, out, streams=BOTH)
    first = lines(out)
    # per account, the audit log first, then the access log, each in storage order
    audit = [("audit_logs", n) for n in (1, 2, 3)]
    assert ids(first) == [*audit, *[("access_logs", access(n)["id"]) for n in (1, 2)]]
    raw = {k: v for k, v in first[3].items() if k not in ("account", "stream", "stored_seq")}
    assert raw == access(1) and first[3]["account"] == "acme"
    assert "stream" not in first[0]  # the audit log's lines as before streams
    # one store sequence: numbers never repeat across the two streams
    assert len({line["stored_seq"] for line in first}) == 5

    store_access(store, [access(3), access(1, status=404)])  # a new one, a changed one
    run_export(store, out)  # no --streams: the consumer's own
    again = lines(out)[5:]
    assert ids(again) == [("access_logs", access(3)["id"]), ("access_logs", access(1)["id"])]
    run_export(store, out)
    assert len(lines(out)) == 7  # nothing new: nothing written
    with store.engine.connect() as conn:
        found = {(s.consumer, s.stream): (s.position, s.backlog) for s in statuses(conn)}
    heads = sorted(line["stored_seq"] for line in lines(out))
    assert set(found) == {("siem", "audit_logs"), ("siem", "access_logs")}
    assert found["siem", "access_logs"] == (heads[-1], 0)
    assert found["siem", "audit_logs"][1] == 0


def test_an_audit_consumer_is_not_given_the_access_log(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1)])
    store_access(store, [access(1)])
    run_export(store, out)
    assert ids(lines(out)) == [("audit_logs", 1)]
    # adding a stream later: its whole table, the audit log's position untouched
    store_records(store, [record(2)])
    run_export(store, out, streams=BOTH)
    assert ids(lines(out))[1:] == [("audit_logs", 2), ("access_logs", access(1)["id"])]


def test_a_stream_started_on_an_empty_table_stays_chosen(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    run_export(store, out, streams=("access_logs",))  # nothing stored yet
    assert lines(out) == []
    store_records(store, [record(1)])
    store_access(store, [access(1)])
    run_export(store, out)  # the consumer's streams: the access log only
    assert ids(lines(out)) == [("access_logs", access(1)["id"])]


def test_dropping_a_stream_needs_reset_options(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1)])
    store_access(store, [access(1)])
    run_export(store, out, streams=BOTH)
    with pytest.raises(ConfigError, match="--reset-options to stop exporting access_logs"):
        run_export(store, out, streams=("audit_logs",))
    run_export(store, out, streams=("audit_logs",), reset_options=True)
    store_access(store, [access(2)])
    run_export(store, out)
    assert len(lines(out)) == 2  # the access log is no longer this consumer's
    with store.engine.connect() as conn:
        assert {s.stream for s in statuses(conn)} == {"audit_logs"}


def test_ocsf_and_since_for_the_access_log(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_access(store, [access(1, minutes=-120), access(2, minutes=5, method="DELETE")])
    store_records(store, [record(1, minutes=-120), record(2, minutes=5)])
    run_export(store, out, streams=BOTH, fmt="ocsf", since=T0)
    events = lines(out)
    validator = Draft202012Validator(SCHEMA)
    for event in events:
        assert not list(validator.iter_errors(event)), event
    assert [e["metadata"]["uid"] for e in events] == ["2", access(2)["id"]]
    assert events[1]["metadata"]["product"]["feature"]["name"] == "Access Log"
    assert (events[1]["activity_id"], events[1]["status_code"]) == (4, "200")
    # --since applied to the rows stored when each stream's first export began; later ones
    # all come out, early or not
    store_access(store, [access(3, minutes=-600)])
    run_export(store, out)
    assert lines(out)[-1]["metadata"]["uid"] == access(3)["id"]


def test_the_command_takes_streams_and_refuses_unknown_ones(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    store_records(store, [record(1)])
    store_access(store, [access(1)])
    config = write_config(tmp_path, db_url)
    out = tmp_path / "feed.jsonl"
    bad = run_cli("--config", str(config), "export", "--consumer", "siem", "--output", str(out),
                  "--streams", "audit_logs,tickets")  # fmt: skip
    assert bad.returncode == 2
    assert "--streams 'audit_logs,tickets'" in one_error_line(bad)
    assert not out.exists()
    done = run_cli("--config", str(config), "export", "--consumer", "siem", "--output", str(out),
                   "--streams", "access_logs,audit_logs")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ids(lines(out)) == [("audit_logs", 1), ("access_logs", access(1)["id"])]
    assert "stream=access_logs: 1 rows" in done.stderr
    status = run_cli("--config", str(config), "status", "--json")
    assert status.returncode == 0, status.stderr
    consumers = json.loads(status.stdout)[0]["export_consumers"]
    assert {(c["consumer"], c["stream"]) for c in consumers} == {
        ("siem", "audit_logs"),
        ("siem", "access_logs"),
    }
    with store.engine.connect() as conn:  # the access log's row keyed NAME/STREAM
        keys = conn.execute(sa.text("SELECT consumer FROM zendesk_audit_export_consumers"))
        assert sorted(keys.scalars()) == ["siem", "siem/access_logs"]


def test_a_row_made_before_its_first_write_does_not_hide_the_file(
    db_url: str, tmp_path: Path
) -> None:
    """The file to cut back to is found whichever row moved last: one saved with no file
    (an account's or a stream's first, before it wrote) does not hide the committed one."""
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1)])
    run_export(store, out)
    length = out.stat().st_size
    later = utc_now() + timedelta(hours=1)
    with store.engine.begin() as conn:
        save(conn, "siem", "other", 0, later)  # no file: as a begin saved it before
        save(conn, "siem", "acme", 0, later, stream="access_logs")
    with store.engine.connect() as conn:
        for account, stream in (("acme", "audit_logs"), ("acme", "access_logs")):
            start = read_start(conn, "siem", account, stream)
            assert (start.file_path, start.file_length) == (str(out), length)
            assert start.streams == BOTH


def test_status_and_metrics_name_the_access_logs_position() -> None:
    found = [
        ConsumerStatus("siem", "acme", 5, 0, None, T0),
        ConsumerStatus("siem", "acme", 9, 2, None, T0, stream="access_logs"),
    ]
    text = ExportStatuses(found).text()
    assert "siem (acme)  position 5" in text and "siem (acme, access_logs)  position 9" in text
    metrics = render_export(found, T0)
    assert 'export_backlog_rows{consumer="siem",account="acme"} 0' in metrics
    assert 'export_backlog_rows{consumer="siem",account="acme",stream="access_logs"} 2' in metrics


def test_a_record_that_sends_our_keys_gets_ours() -> None:
    tail = ',"account":"acme","stream":"access_logs","stored_seq":'
    line = raw_line(7, '{"id":"x","stream":"evil"}', "acme", tail, "access_logs")
    assert json.loads(line) == {"id": "x", "stream": "access_logs", "account": "acme",
                                "stored_seq": 7}  # fmt: skip
    plain = raw_line(8, '{"id":"y"}', "acme", tail, "access_logs")
    assert json.loads(plain) == {"id": "y", "account": "acme", "stream": "access_logs",
                                 "stored_seq": 8}  # fmt: skip
