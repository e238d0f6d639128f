"""What the row upserts store is exactly what ``parse_record`` made, odd values included: the
same texts (quotes, backslashes, control characters, U+2028, emoji, a NUL turned U+FFFD,
numbers as text), the same integers at BIGINT's bounds, NULLs, the times' texts, and ``raw``
as the very text hashed for the ledger, byte for byte where the database keeps text (SQLite,
MariaDB). On the first write (an insert) and on a change (the upsert's update), on each
database; every writer goes straight to its driver or through Core, and none may re-encode."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from parts.databases import kind_of
from support import fresh_store

from etl.records.audit import RAW_DIGEST, RAW_JSON, TEXT_FIELDS, parse_record
from etl.records.canonical import canonical_json
from etl.records.chain import record_hash
from etl.storage.schema.coltypes import sqlite_time
from etl.storage.schema.logs import audit_logs
from etl.storage.store import Store

ACCOUNT = "acme"
SYNCED = datetime(2026, 10, 7, 1, 13, 6, 250001, tzinfo=UTC)  # six fraction digits kept
BIG = 2**63
ODD_TEXTS = [
    'say "hi" \\ there \\" \\\\u0041 / \\/',
    "tab\tnew\nline\r\x01\x1f\x7f bell\x07",
    "line\u2028para\u2029 zero\u200bwidth \ufeff bom",
    "😀 Zoë ✓ 中文 עברית",
    "nul\x00inside",  # NUL: parse_record makes it U+FFFD, in the columns and in raw
    "",
    "00123",
    "1e5",
    "-0",
    "null",
    "true",
    '{"not": "json"}',
    "x" * 5000,
]


def _record(record_id: int, version: int) -> dict[str, Any]:
    texts = ODD_TEXTS[record_id % len(ODD_TEXTS) :] + ODD_TEXTS[: record_id % len(ODD_TEXTS)]
    record: dict[str, Any] = {
        "id": record_id,
        "created_at": f"2026-10-07T0{record_id % 10}:13:06Z",
        "action": texts[0][:20],
        "action_label": texts[1],
        "actor_id": [BIG - 1, -BIG, BIG, 0, None, "77", -1][record_id % 7],
        "actor_name": texts[2],
        "change_description": texts[3],
        "ip_address": None if record_id % 2 else "2001:db8::1",
        "source_id": [-BIG, BIG - 1, BIG * 4, 1.0, True][record_id % 5],
        "source_label": texts[4],
        "source_type": texts[5][:20] if record_id % 3 else None,
        "url": texts[6] + texts[7],
        "version": version,
        "huge": BIG * BIG,
        'quote"key': "value\\",
    }
    if record_id % 2:  # not plain values: parse_record takes its slower encoder
        # the text of an escaped NUL (no NUL) in the second version only: a writer may
        # take another path for a batch that holds one
        escaped = "\\u0000" if version == 2 else "\\u0041"
        record["nested"] = {"deep": [1, 1.5, -0.0, 1e300, escaped, {"k": [None, True, BIG]}]}
    return record


# Ids at BIGINT's bounds and between; the record's position picks its odd values.
IDS = [BIG - 1, -BIG, 0, 1, *range(1000, 1013)]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = fresh_store(db_url)
    yield store
    store.engine.dispose()


def _parsed(version: int) -> list[dict[str, Any]]:
    rows = []
    for record_id in IDS:
        row = parse_record(_record(record_id, version), ACCOUNT, SYNCED)
        assert isinstance(row, dict), row
        rows.append(row)
    return rows


def _write(store: Store, rows: list[dict[str, Any]]) -> tuple[int, int]:
    run_id = store.start_run(ACCOUNT, SYNCED, SYNCED, None)
    result = store.write_page(ACCOUNT, run_id, rows, [], None)
    return result.inserted, result.updated


def _stored(store: Store) -> dict[int, dict[str, Any]]:
    """Each row as the driver gives it, through no column type (times as SQLite's text,
    ``raw`` as the stored text), and as the table's types read it."""
    plain = sa.table(audit_logs.name, *(sa.column(c.name) for c in audit_logs.columns))
    raw_text = sa.cast(audit_logs.c.raw, sa.Text).label("raw_text")
    with store.engine.connect() as conn:
        driver = {r["id"]: dict(r) for r in conn.execute(sa.select(plain)).mappings()}
        typed = conn.execute(sa.select(audit_logs, raw_text)).mappings()
        for found in typed:
            driver[found["id"]]["typed"] = dict(found)
    return driver


def _assert_stored_as_parsed(store: Store, rows: list[dict[str, Any]]) -> None:
    kind = kind_of(store.engine.url.render_as_string())
    stored = _stored(store)
    assert sorted(stored) == sorted(IDS)
    for row in rows:
        back = stored[row["id"]]
        typed = back["typed"]
        for name in (*TEXT_FIELDS, "account", "actor_id", "source_id"):
            assert back[name] == row[name], (row["id"], name)
            assert type(back[name]) is type(row[name]), (row["id"], name)
        assert typed["created_at"] == row["created_at"]
        assert typed["synced_at"] == row["synced_at"] == SYNCED
        assert canonical_json(typed["raw"]) == canonical_json(row["raw"])
        text = typed["raw_text"]
        if kind == "sqlite":
            assert back["created_at"] == sqlite_time(row["created_at"], 0)
            assert back["synced_at"] == sqlite_time(SYNCED) == "2026-10-07T01:13:06.250001Z"
        # the ledger's hash of the stored record is that of the parsed one
        assert record_hash(json.loads(text)) == record_hash(row["raw"])
        if kind != "postgresql" and RAW_JSON in row:  # jsonb keeps a text of its own
            # the very text parse_record made, and hashed for the ledger
            assert text == row[RAW_JSON]
            if RAW_DIGEST in row:  # a record of plain values, its hash made by the fetcher
                assert hashlib.sha256(text.encode()).digest() == row[RAW_DIGEST]
        elif kind != "postgresql":  # a NUL replaced: a text made anew, its U+FFFD as UTF-8
            assert json.loads(text) == row["raw"]
            assert "\ufffd" in text and "\\ufffd" not in text


def test_odd_values_are_stored_as_parse_record_made_them(store: Store) -> None:
    first = _parsed(version=1)
    by_id = {row["id"]: row for row in first}
    # what parse_record made of the oddest: the test's premise, not the writers'
    assert "\x00" not in json.dumps([by_id[i] for i in IDS], default=str)
    assert {by_id[i]["actor_id"] for i in IDS} >= {BIG - 1, -BIG, None, 77}
    assert {by_id[i]["source_id"] for i in IDS} >= {-BIG, BIG - 1, None, 1}
    assert str(BIG * BIG) in by_id[BIG - 1][RAW_JSON]
    # rows with a NUL replaced have no text of parse_record's; the rest have one
    assert 0 < sum(RAW_JSON in row for row in first) < len(first)
    assert 0 < sum(RAW_DIGEST in row for row in first) < sum(RAW_JSON in row for row in first)

    assert _write(store, first) == (len(IDS), 0)
    _assert_stored_as_parsed(store, first)

    changed = _parsed(version=2)  # every column rewritten by the upsert's update
    assert _write(store, changed) == (0, len(IDS))
    _assert_stored_as_parsed(store, changed)
    assert _write(store, _parsed(version=2)) == (0, 0)
