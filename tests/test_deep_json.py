"""A record that cannot be stored becomes a reject and the page commits, whatever the
reason: nested past what MariaDB's JSON check takes (32 levels), or so deep (1,200
levels, valid JSON) that orjson and the json module refuse the body; the body is still
judged by the records it holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from loopback import Exchange, LoopbackServer
from support import audit_record, fake_time_client, fresh_store, recent, sim_account, stored_rows

from etl.common.jsonbody import decode_iteratively, decode_json
from etl.records.audit import MAX_JSON_DEPTH, RAW_JSON, Reject, parse_record
from etl.records.canonical import canonical_json
from etl.storage.schema.coltypes import MYSQL_DIALECTS
from etl.storage.store import Store
from etl.sync.account import sync_account

LAG = timedelta(seconds=61)


def nested_json(record: dict[str, Any], depth: int) -> str:
    """``record`` as JSON text with a field ``deep`` of arrays, the whole ``depth`` levels
    deep (the record counts as one); written by hand, as no encoder goes 1,200 deep."""
    inner = depth - 1
    text = json.dumps(record)
    return text[:-1] + ', "deep": ' + "[" * inner + '"bottom"' + "]" * inner + "}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = fresh_store(db_url)
    yield store
    store.engine.dispose()


def _rejects(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT record_id, reason FROM zendesk_audit_rejects"))
        return {str(record_id): reason for record_id, reason in rows}


def test_deep_records_are_rejects_and_their_pages_commit(store: Store, db_url: str) -> None:
    at = recent(30)
    shallow = [audit_record(i, at + timedelta(seconds=i)) for i in (1, 2, 3, 6, 7)]
    first = [json.dumps(r) for r in shallow[:3]]
    first.append(nested_json(audit_record(4, at + timedelta(seconds=4)), MAX_JSON_DEPTH + 1))
    first.append(nested_json(audit_record(5, at + timedelta(seconds=5)), 1_200))
    first.append(nested_json(audit_record(8, at + timedelta(seconds=5)), MAX_JSON_DEPTH))
    second = [json.dumps(r) for r in shallow[3:]]

    def respond(exchange: Exchange) -> None:
        if "page%5Bafter%5D=two" in exchange.path or "page[after]=two" in exchange.path:
            body = '{"audit_logs": [' + ",".join(second) + '], "meta": {"has_more": false}}'
        else:
            body = (
                '{"audit_logs": [' + ",".join(first) + "], "
                '"meta": {"has_more": true, "after_cursor": "two"}}'
            )
        exchange.send(200, {"Content-Type": "application/json"}, body.encode())

    with LoopbackServer(respond) as server:
        account = sim_account(server.url, lag=LAG, workers=1, retry_budget=5.0)
        with fake_time_client(account) as client:
            summary = sync_account(account, client, store)
    assert summary.status == "success", summary
    assert sorted(row["id"] for row in stored_rows(db_url)) == [1, 2, 3, 6, 7, 8]
    rejects = _rejects(store)
    assert sorted(rejects) == ["4", "5"]
    assert f"nested {MAX_JSON_DEPTH + 1} levels deep" in rejects["4"]
    assert "nested 1200 levels deep" in rejects["5"]


@pytest.mark.databases("mysql")
def test_a_row_the_database_refuses_for_its_json_becomes_a_reject(store: Store) -> None:
    """MariaDB's CHECK (JSON_VALID) on raw fails with error 4025, an OperationalError:
    still a refused value, not a failed run. (Rows reach the store only through
    parse_record, which rejects such a record first; this is the store's own guard.)"""
    assert store.engine.dialect.name in MYSQL_DIALECTS
    at = recent(5)
    rows = []
    for i in (1, 2, 3):
        row = parse_record(audit_record(i, at), "acme", recent(0))
        assert isinstance(row, dict)
        rows.append(row)
    deep: Any = "bottom"
    for _ in range(40):
        deep = [deep]
    rows[1] = {**rows[1], "raw": {**rows[1]["raw"], "deep": deep}}
    rows[1].pop(RAW_JSON)
    run_id = store.start_run("acme", recent(60), recent(1), None)
    result = store.write_page("acme", run_id, rows, [], None)
    assert (result.inserted, result.rejected) == (2, 1)
    assert "the database refused it" in _rejects(store)["2"]


def test_decoding_has_no_depth_limit() -> None:
    deep = nested_json(audit_record(1, recent(5)), 5_000)
    value = decode_json(deep.encode())
    assert value["id"] == 1
    assert canonical_json(value) == canonical_json(decode_iteratively(deep))
    reject = parse_record(value, "acme", recent(0))
    assert isinstance(reject, Reject) and reject.record_id == "1"
    assert "nested 5000 levels deep" in reject.reason
    assert canonical_json(decode_json(reject.raw)) == canonical_json(value)  # kept whole


SAMPLES = [
    '{"a": [1, 2.5, {"b": null, "c": true}], "d": "x\\u00e9\\n", "e": {}, "f": []}',
    '{"g": -1e5, "h": 0, "i": -0.0, "j": 12345678901234567890123, "k": "\\ud83d\\ude00"}',
    " [ ] ",
    '"text"',
    '{"a" : { "b" : [ 1 , [ ] , { } ] } , "a": 2}',
    "[NaN, Infinity, -Infinity, false]",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_the_iterative_decoder_gives_what_the_json_module_gives(text: str) -> None:
    assert repr(decode_iteratively(text)) == repr(json.loads(text))


@pytest.mark.parametrize(
    "text", ["{", "[1,]", '{"a"}', "[1 2]", '{"a":1,}', "", "tru", "[1]x", "01", '["\x01"]']
)
def test_the_iterative_decoder_refuses_what_is_not_json(text: str) -> None:
    with pytest.raises(ValueError):
        decode_iteratively(text)
    with pytest.raises(ValueError):
        json.loads(text)
