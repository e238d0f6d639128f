"""The derived columns' check where the database vouches for a row (PostgreSQL:
``etl.integrity.checks.vouch``) or sends its array once a page (MariaDB): a column the
writer would store otherwise is still found, on odd records above all (a number where a
text is expected, JSON null against a missing member, times with fractions and offsets,
float ids, unicode, a NUL, 31 levels of nesting), and an untouched row is never one.

Rows are written by the store's own path (as a sync writes them), edited with plain SQL,
and read as ``verify`` reads them (``reads.rows.rows``), each row's columns compared as its
walk compares them. On every database (the fixtures run each test on all three)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from etl.integrity.checks import derived
from etl.integrity.reads import rows as row_reads
from etl.records.access import parse_access_record
from etl.records.audit import Reject, parse_record
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.logs import access_logs, audit_logs
from etl.storage.store import Store
from etl.storage.streams import StreamStore

AT = datetime(2026, 11, 5, 7, 8, 9, tzinfo=UTC)
ZT = "2026-11-05T07:08:09Z"


def _audit(record_id: int, **fields: Any) -> dict[str, Any]:
    record = {
        "id": record_id,
        "action": "update",
        "action_label": "Updated",
        "actor_id": 360004113871,
        "actor_name": "李雷",
        "change_description": "Conditions changed\nActions changed",
        "created_at": ZT,
        "ip_address": "192.0.2.22",
        "source_id": 360374697293,
        "source_label": "Trigger: Notify",
        "source_type": "rule",
        "url": f"https://example.zendesk.com/api/v2/audit_logs/{record_id}.json",
    }
    for name, value in fields.items():
        if value is _MISSING:
            del record[name]
        else:
            record[name] = value
    return record


def _access(record_id: str, **fields: Any) -> dict[str, Any]:
    record = {
        "id": record_id,
        "timestamp": ZT,
        "user_id": "360004113871",
        "ip_address": "192.0.2.22",
        "method": "GET",
        "url": "/api/v2/tickets/7.json",
        "status": 200,
        "authorization_type": "session",
        "client": "Mozilla/5.0",
        "referer": "https://example.zendesk.com/agent/tickets/7",
        "bytes_sent": 1234,
        "category": "ticket",
        "summary": "Viewed ticket 7",
        "origin_service": "support",
        "graphql": None,
    }
    for name, value in fields.items():
        if value is _MISSING:
            del record[name]
        else:
            record[name] = value
    return record


_MISSING = object()
_DEEP: Any = "bottom"
for _ in range(29):  # 31 levels with the record and its member: the most kept
    _DEEP = {"d": _DEEP}

# (record, the columns' edits, with plain SQL): each edited column must be found, and
# only those (no edit: no finding)
AUDIT_CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (_audit(1), {}),
    (_audit(2), {"action": "UPDATE"}),  # a case-insensitive collation's equal
    (_audit(3), {"action": "update "}),  # a PAD SPACE collation's equal
    (_audit(4), {"actor_name": "李"}),
    (_audit(5), {"actor_id": 360004113872, "source_id": None}),
    (_audit(6, actor_id="88"), {"actor_id": None}),  # a number given as text: stored 88
    (_audit(7, actor_id="88"), {}),
    (_audit(8, actor_id=True), {"actor_id": 1}),  # a boolean: NULL
    (_audit(9, actor_id=1234.0), {"actor_id": None}),  # a float id: 1234
    (_audit(10, actor_id=1234.0), {}),
    (_audit(11, source_id=9007199254740993.0), {"source_id": 9007199254740992}),  # NULL
    (_audit(12, actor_id=2**70), {"actor_id": 2**63 - 1}),  # past BIGINT: NULL
    (_audit(13, action=7), {"action": "7"}),  # a number where a text is: NULL
    (_audit(14, actor_name=None), {"actor_name": "null"}),  # JSON null: NULL
    (_audit(15, actor_name=_MISSING), {"actor_name": ""}),  # missing: NULL
    (_audit(16, actor_name=None), {}),
    (_audit(17, change_description=_DEEP), {"change_description": "{}"}),  # an object
    (_audit(18, change_description=_DEEP), {}),
    (_audit(19, action="nul\x00here"), {"action": "nul"}),  # stored with U+FFFD
    (_audit(20, action="nul\x00here"), {}),
    (_audit(21, created_at="2026-11-05T09:08:09+02:00"), {"created_at": AT + timedelta(hours=2)}),
    (_audit(22, created_at="2026-11-05T09:08:09+02:00"), {}),
    (_audit(23, created_at="2026-11-05T07:08:09.987z"), {"created_at": AT + timedelta(seconds=1)}),
    (_audit(24, created_at="2026-11-05T07:08:09.987z"), {}),
    (_audit(25), {"created_at": AT - timedelta(days=1)}),
    (_audit(26), {"url": None, "source_type": "user"}),
    (_audit(27, ip_address=None), {"ip_address": "192.0.2.22"}),
    (_audit(28, source_label='é\u2028\u0001\\"/'), {"source_label": 'é\u2028\u0001\\"'}),
    (_audit(29, source_label='é\u2028\u0001\\"/'), {}),
    # past 2**53 a float names no one integer: NULL (jsonb's = takes the two for equal)
    (_audit(30, source_id=9007199254740993.0), {"source_id": 9007199254740993}),
    (_audit(31), {"action_label": "Updated "}),
]
ACCESS_CASES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    (_access("a1"), {}),
    (_access("a2"), {"path": "/api/v2/tickets/8.json", "status": 201}),
    (_access("a3", user_id=6596848315901), {"user_id": None}),  # an integer: its text
    (_access("a4", user_id=6596848315901), {}),
    (_access("a5", user_id=""), {"user_id": ""}),  # empty: NULL
    (_access("a6", status=2**40), {"status": 2**31 - 1}),  # past INTEGER: NULL
    (_access("a7", url="/p?q=1#f"), {"path": "/p?q=1"}),  # path: /p
    (_access("a8", url="/p?q=1#f"), {}),
    (_access("a9", url="https://h.example/x?y"), {"path": "https://h.example/x"}),  # /x
    (_access("a10", url="/" + "p" * 600 + "?q=1"), {"path": "/" + "p" * 499}),  # too long
    (_access("a11", url=None), {"path": ""}),
    (_access("a12", graphql={"b": [1.5, {"a": None}], "a": 2}), {"graphql": {"b": [1.5], "a": 2}}),
    (_access("a13", graphql={"b": [1.5, {"a": None}], "a": 2}), {}),
    (_access("a14", graphql=_MISSING), {"graphql": {"a": 1}}),
    (_access("a15"), {"timestamp": AT + timedelta(microseconds=1)}),
    (_access("a16", timestamp="2026-11-05T09:08:09.123456+02:00"), {"timestamp": AT}),
    (_access("a17", timestamp="2026-11-05T09:08:09.123456+02:00"), {}),
    (_access("a18", method=7, bytes_sent=12.0), {"method": "7", "bytes_sent": None}),
    (_access("a19", method=7, bytes_sent=12.0), {}),
    (_access("a20", summary="Ünïcødé ✓"), {"summary": "Unicode ✓"}),
    (_access("a21", url="/p#f?q"), {"path": "/p#f"}),  # path: /p
    (  # every other column
        _access("a22"),
        {
            "ip_address": "192.0.2.23",
            "url": "/api/v2/tickets/7.JSON",
            "authorization_type": "Session",
            "client": "Mozilla/5.0 ",
            "referer": "https://example.zendesk.com/agent/tickets/8",
            "category": "user",
            "origin_service": "",
        },
    ),
]


def _store(db_url: str) -> sa.Engine:
    engine = open_engine(db_url)
    migrate.upgrade(engine)
    store = Store(engine)
    run_id = store.start_run("acme", AT, AT, None)
    rows = []
    for (record, _), parse in (
        *((case, parse_record) for case in AUDIT_CASES),
        *((case, parse_access_record) for case in ACCESS_CASES),
    ):
        row = parse(record, "acme", AT)
        assert not isinstance(row, Reject), row
        rows.append(row)
    with store.transaction() as transaction:
        transaction.write_batch("acme", run_id, [r for r in rows if "created_at" in r], [])
    access = StreamStore(store, "access_logs", access_logs)
    access.write_page("acme", run_id, [r for r in rows if "timestamp" in r], [], None)
    return engine


def _found(engine: sa.Engine) -> dict[str, list[str]]:
    """Each row's derived columns found differing, as verify's walk finds them."""
    found = {}
    with engine.connect() as conn:
        compact = conn.dialect.name == "sqlite"
        for _, record_id, text, stream, values, *_ in row_reads.rows(conn, "acme", 0):
            assert text is not None  # every row written by the store's path, as text
            if values != row_reads.VOUCHED:
                changed = derived.differing(derived.STREAMS[stream], text, values, compact)
                if changed:
                    found[str(record_id)] = changed
    return found


def test_an_edited_column_is_found_on_odd_records_and_an_untouched_one_never(
    db_url: str,
) -> None:
    engine = _store(db_url)
    try:
        assert _found(engine) == {}  # as the writer stored them
        with engine.begin() as conn:
            for table, cases in ((audit_logs, AUDIT_CASES), (access_logs, ACCESS_CASES)):
                for record, edits in cases:
                    if edits:
                        where = table.c.id == record["id"]
                        conn.execute(sa.update(table).where(where).values(edits))
        want = {str(r["id"]): sorted(e) for r, e in (*AUDIT_CASES, *ACCESS_CASES) if e}
        assert {key: sorted(value) for key, value in _found(engine).items()} == want
    finally:
        engine.dispose()


def test_postgresql_vouches_for_the_usual_rows(db_url: str) -> None:
    """The array is sent (and compared in Python) only for rows PostgreSQL does not
    vouch for: not the usual ones. Elsewhere every row's array comes."""
    engine = _store(db_url)
    try:
        with engine.connect() as conn:
            read = {str(row[1]): row[4] for row in row_reads.rows(conn, "acme", 0)}
        vouched = {key for key, values in read.items() if values == row_reads.VOUCHED}
        if engine.dialect.name == "postgresql":
            assert {"1", "16", "18", "20", "29", "a1", "a13", "a14"} <= vouched
            for record_id in ("7", "10", "22", "24", "a4", "a8", "a17", "a19"):
                assert record_id not in vouched  # the exact path decides
        else:
            assert vouched == set()
    finally:
        engine.dispose()


def test_a_status_past_integer_held_by_sqlite_is_found(db_url: str) -> None:
    """SQLite's INTEGER column holds 2**40, which the writer stores as NULL: equal to
    ``raw``'s own field, still found."""
    engine = _store(db_url)
    try:
        if engine.dialect.name != "sqlite":
            return  # the column holds no such number there
        with engine.begin() as conn:
            edit = sa.update(access_logs).where(access_logs.c.id == "a6")
            conn.execute(edit.values(status=2**40))
        assert _found(engine) == {"a6": ["status"]}
    finally:
        engine.dispose()


def test_a_time_before_year_1_is_found_on_postgresql(db_url: str) -> None:
    """PostgreSQL's ``to_char`` writes the year 2026 BC as ``2026``: that time is not the
    one ``raw`` gives."""
    engine = _store(db_url)
    try:
        if engine.dialect.name != "postgresql":
            return  # no such time there
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "UPDATE zendesk_audit_logs SET created_at = '2026-11-05 07:08:09+00 BC'"
                " WHERE id = 1"
            )
        assert _found(engine) == {"1": ["created_at"]}
    finally:
        engine.dispose()


def test_postgresql_vouches_for_nothing_in_a_table_whose_column_was_altered(
    db_url: str,
) -> None:
    """Its comparisons are exact for the columns as the schema makes them: a text column
    given another collation (a case-insensitive one compares ``UPDATE`` equal to
    ``update``) or another type, and every row's array is compared in Python."""
    engine = _store(db_url)
    try:
        if engine.dialect.name != "postgresql":
            return  # nothing is vouched for there
        with engine.begin() as conn:
            conn.exec_driver_sql(
                'ALTER TABLE zendesk_audit_logs ALTER COLUMN action TYPE varchar(255) COLLATE "C"'
            )
            conn.exec_driver_sql("ALTER TABLE zendesk_access_logs ALTER COLUMN status TYPE bigint")
        with engine.connect() as conn:
            read = [row[4] for row in row_reads.rows(conn, "acme", 0)]
        assert row_reads.VOUCHED not in read
        assert _found(engine) == {}
    finally:
        engine.dispose()
