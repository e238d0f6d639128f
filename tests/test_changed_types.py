""" "Changed?" is exact on every database: a record's field going from ``1`` to ``true``, ``0``
to ``false`` or ``1`` to ``1.0`` is a change (stored, numbered anew, reported by resync);
the same record with its keys in another order is not. One canonical text decides
(``etl.records.canonical``), and PostgreSQL's ``raw::text`` agrees with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support import audit_record, fake_time_client, fresh_store, recent, sim_account, stored_rows

from etl.records.audit import parse_record
from etl.records.canonical import canonical_json
from etl.storage.store import Store
from etl.sync.account import resync_account, sync_account
from zendesk_sim import SimulatedZendesk

LAG = timedelta(seconds=61)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = fresh_store(db_url)
    yield store
    store.engine.dispose()


def _row(record: dict[str, Any]) -> dict[str, Any]:
    row = parse_record(record, "acme", recent(0))
    assert isinstance(row, dict)
    return row


def _seq(store: Store, record_id: int) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT stored_seq FROM zendesk_audit_logs WHERE id = :i"), {"i": record_id}
            ).scalar_one()
        )


def _stored_text(db_url: str, record_id: int) -> str:
    (row,) = [r for r in stored_rows(db_url) if r["id"] == record_id]
    return canonical_json(row["raw"])


CHANGES = [
    pytest.param({"flag": 1}, {"flag": True}, id="1-to-true"),
    pytest.param({"flag": 0}, {"flag": False}, id="0-to-false"),
    pytest.param({"flag": True}, {"flag": 1}, id="true-to-1"),
    pytest.param({"flag": 1}, {"flag": 1.0}, id="1-to-1.0"),
    pytest.param({"flag": 2.5}, {"flag": 2.25}, id="float"),
    pytest.param({"flag": [1, {"on": 1}]}, {"flag": [1, {"on": True}]}, id="nested-1-to-true"),
    pytest.param({"flag": None}, {"flag": 0}, id="null-to-0"),
    pytest.param({"flag": {}}, {"flag": []}, id="object-to-array"),
]


@pytest.mark.parametrize(("before", "after"), CHANGES)
def test_a_change_of_type_is_stored_on_every_database(
    store: Store, db_url: str, before: dict[str, Any], after: dict[str, Any]
) -> None:
    run_id = store.start_run("acme", recent(60), recent(1), None)
    at = recent(5)
    first = store.write_page("acme", run_id, [_row(audit_record(1, at, **before))], [], None)
    assert (first.inserted, first.updated) == (1, 0)
    seq = _seq(store, 1)
    assert store.unchanged("acme", [_row(audit_record(1, at, **before))])
    assert not store.unchanged("acme", [_row(audit_record(1, at, **after))])  # re-read: written
    again = store.write_page("acme", run_id, [_row(audit_record(1, at, **after))], [], None)
    assert (again.inserted, again.updated) == (0, 1)
    assert _stored_text(db_url, 1) == canonical_json(audit_record(1, at, **after))
    assert _seq(store, 1) > seq  # numbered anew: export sends it again


SAME = [
    pytest.param({"a": 1, "b": True}, {"b": True, "a": 1}, id="key-order"),
    pytest.param({"x": {"p": 1.5, "q": [0]}}, {"x": {"q": [0], "p": 1.5}}, id="nested-key-order"),
    pytest.param({"x": 1.0}, {"x": 1.0}, id="same-float"),
    pytest.param({"x": "é\u2028"}, {"x": "é\u2028"}, id="same-text"),
]


@pytest.mark.parametrize(("before", "after"), SAME)
def test_the_same_record_in_another_key_order_is_unchanged(
    store: Store, before: dict[str, Any], after: dict[str, Any]
) -> None:
    run_id = store.start_run("acme", recent(60), recent(1), None)
    at = recent(5)
    store.write_page("acme", run_id, [_row(audit_record(1, at, **before))], [], None)
    seq = _seq(store, 1)
    record = audit_record(1, at)
    reordered = {**dict(reversed(list(record.items()))), **after}
    assert store.unchanged("acme", [_row(reordered)])  # a re-read page has nothing to write
    missing = _row(audit_record(2, at, **after))
    assert not store.unchanged("acme", [_row(reordered), missing])
    assert not store.unchanged("other", [_row(reordered)])  # another account's rows
    again = store.write_page("acme", run_id, [_row(reordered)], [], None)
    assert (again.inserted, again.updated) == (0, 0)
    assert _seq(store, 1) == seq


def test_canonical_text_follows_its_rules() -> None:
    value = {"b": [1, 1.0, True, None, 1e16, 1e-07, -0.0, 1.5], "a": 'é\n"', "é": {}, "Z": []}
    assert canonical_json(value) == (
        '{"Z":[],"a":"é\\n\\"","b":[1,1.0,true,null,10000000000000000,0.0000001,0.0,1.5],"é":{}}'
    )
    assert canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'  # the flat fast path
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    assert canonical_json(deep) == "[" * 5000 + "1" + "]" * 5000
    for bad in (float("nan"), {1: 2}, (1, 2), b"x"):
        with pytest.raises((TypeError, ValueError)):
            canonical_json(bad)


@pytest.mark.databases("postgresql")
def test_postgresql_text_agrees_with_the_canonical_text(db_url: str) -> None:
    """What PostgreSQL's jsonb text calls equal, the canonical text calls equal too, for
    the numbers Python's json module writes (what the store sends)."""
    pairs: list[tuple[Any, Any]] = [(1, 1.0), (1, True), (1e16, 10**16), (1.5, 1.5)]
    pairs += [(0.0, -0.0), (2.5e-7, 2.5e-7), (1.5, 1.25), (0.1, 0.10000000000000002)]
    pairs += [(1e22, 10**22), (123.0, 123), ({"a": 1, "b": 2}, {"b": 2, "a": 1})]
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            for left, right in pairs:
                texts = [json.dumps(left), json.dumps(right)]
                pg_equal = conn.execute(
                    sa.text("SELECT CAST(:l AS jsonb)::text = CAST(:r AS jsonb)::text"),
                    {"l": texts[0], "r": texts[1]},
                ).scalar_one()
                ours = canonical_json(json.loads(texts[0])) == canonical_json(json.loads(texts[1]))
                assert pg_equal == ours, (left, right)
    finally:
        engine.dispose()


@pytest.mark.databases("postgresql")
def test_postgresql_compares_a_page_by_primary_key_look_ups(store: Store) -> None:
    """The comparison of a re-read page looks each row up by the key, whatever the
    planner's statistics: a plain join of the page's ids was planned on a fresh table as a
    scan of every row of the account."""
    run_id = store.start_run("acme", recent(60), recent(1), None)
    at = recent(5)
    rows = [_row(audit_record(i, at)) for i in range(1, 2001)]
    for start in range(0, len(rows), 500):
        store.write_page("acme", run_id, rows[start : start + 500], [], None)
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        assert store.unchanged("acme", rows[1000:1100])
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    ((statement, parameters),) = seen
    with store.engine.connect() as conn:
        plan = "\n".join(conn.exec_driver_sql(f"EXPLAIN {statement}", parameters).scalars())
    assert "Index Scan using pk_zendesk_audit_logs" in plan, plan
    assert "Seq Scan on zendesk_audit_logs" not in plan, plan
    assert "Bitmap" not in plan, plan


def test_resync_reports_a_field_that_became_true(db_url: str) -> None:
    """The history differs once Zendesk says ``true`` where ``1`` was stored: resync
    reports it, stores it, and every database then holds ``true``."""
    store = fresh_store(db_url)
    record = audit_record(7, recent(30), flag=1)
    with SimulatedZendesk([], latency=0) as sim:
        sim.add_records([record])
        account = sim_account(sim.url, lag=LAG, workers=1)
        with fake_time_client(account) as client:
            assert sync_account(account, client, store).inserted == 1
        sim.add_records([{**record, "flag": True}])
        with fake_time_client(account) as client:
            summary = resync_account(account, client, store, since=recent(60))
    assert (summary.inserted, summary.updated) == (0, 1)
    (row,) = stored_rows(db_url)
    assert row["raw"]["flag"] is True
    store.engine.dispose()
