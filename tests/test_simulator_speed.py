"""The simulator's fast paths give exactly what the plain ones would.

Pages are joined from per-record JSON text (``RecordSource.fragment``, text cached
for added records), searches gallop from a guessed index, timestamps format from
tables and query strings parse field by field. Each is checked here against the
straightforward computation it replaces, so the bytes on the wire cannot drift.
"""

from __future__ import annotations

import bisect
import json
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest

from zendesk_sim import generate_records
from zendesk_sim.audit.generate import ID_BASE, ID_STRIDE
from zendesk_sim.audit.listing import cursor_fields, cursor_page, encode, materialize
from zendesk_sim.audit.query import BoundsPolicy, parse_list_query
from zendesk_sim.audit.store import RecordStore
from zendesk_sim.web.handler import parse_query
from zendesk_sim.wire.responses import compact_json, json_response, json_text_response
from zendesk_sim.wire.timestamps import format_ts

START = datetime(2023, 1, 1, tzinfo=UTC)


def _dumps(payload: object) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


SOURCES = [
    (0, 0, 1.0, "https://example.zendesk.com"),
    (1, 1, 1.0, "https://example.zendesk.com"),
    (50, 3, 30.0, "https://example.zendesk.com/"),
    (3000, 42, 59.5, 'https://a"b\\c{x}%s\u00e9\u2028\x7f.example'),
    (20_000, 7, 0.01, "https://example.zendesk.com"),
]


@pytest.mark.parametrize(("n", "seed", "days", "base_url"), SOURCES)
def test_fragment_is_the_records_json(n: int, seed: int, days: float, base_url: str) -> None:
    source = generate_records(
        n, start=START, end=START + timedelta(days=days), seed=seed, base_url=base_url
    )
    for i in range(n):
        record = source[i]
        assert source.fragment(i, source.key(i)) == _dumps(record)
        # created_at from tables is strftime's text
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(source.key(i)[0]))
        assert record["created_at"] == created


@pytest.mark.parametrize(("n", "seed", "days"), [source[:3] for source in SOURCES])
def test_searches_agree_with_bisect_over_every_key(n: int, seed: int, days: float) -> None:
    source = generate_records(n, start=START, end=START + timedelta(days=days), seed=seed)
    keys = [source.key(i) for i in range(n)]
    rng = random.Random(seed)
    probes = [(-(2**63), -(2**63)), (2**63, 2**63), (0, ID_BASE)]
    for created, record_id in keys[:: max(1, n // 500)]:
        for dt in (-1, 0, 1):
            for did in (-(2**63), -1, 0, 1, 2**63):
                probes.append((created + dt, record_id + did))
    for _ in range(500):
        record_id = rng.choice(
            [rng.randint(-(10**15), 10**16), ID_BASE + rng.randint(-9999, (n + 2) * ID_STRIDE)]
        )
        probes.append((rng.randint(int(START.timestamp()) - 9, 1_700_000_000), record_id))
    for key in probes:
        assert source.bisect_left(key) == bisect.bisect_left(keys, key), key
        assert source.bisect_right(key) == bisect.bisect_right(keys, key), key


def test_format_ts_matches_strftime() -> None:
    for ts in [
        *range(-200_000, 200_000, 37),
        *range(1_690_000_000, 1_700_000_000, 9_973),
        253_402_300_799,  # 9999-12-31T23:59:59Z
    ]:
        assert format_ts(ts) == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@pytest.mark.parametrize(
    "query",
    [
        "",
        "&",
        "a",
        "a=",
        "=b",
        "a=1&a=2&&b=%20x+y",
        "page%5Bsize%5D=5&filter[created_at][]=2023-01-01T00:00:00Z&x=%E2%82%AC&y=%ff",
        "page[after]=%2B%2F%2B%2FAAA%3D&sort=-created_at&k=v=w",
    ],
)
def test_query_parsing_matches_parse_qsl(query: str) -> None:
    assert parse_query(query) == parse_qsl(query, keep_blank_values=True)
    assert parse_query(query) == parse_qsl(query, keep_blank_values=True)  # cached


def _added(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": 10**15 + i,
            "created_at": f"2023-01-{1 + i % 28:02d}T00:00:{i % 60:02d}Z",
            "action": "update",
            "nested": {"s": '\u00e9\n"\u2028', "f": [1.5, 1e-7, None, True], "big": 10**20},
        }
        for i in range(count)
    ]


def test_joined_pages_equal_encoding_the_materialized_records() -> None:
    source = generate_records(500, start=START, end=START + timedelta(days=30), seed=5)
    store = RecordStore(source)
    store.add(_added(120))

    def link(name: str, value: str) -> str:
        return f"http://sim/api/v2/audit_logs?{name}={value}"

    for size in ("1", "7", "100"):
        for sort in ("created_at", "-created_at"):
            params: dict[str, list[str]] = {"page[size]": [size], "sort": [sort]}
            while True:
                query = parse_list_query(params, BoundsPolicy(), time.time())
                page = cursor_page(store, query)
                fields = cursor_fields(page, link)
                body = {"audit_logs": materialize(store, page), **fields}
                assert encode(store, page, fields) == compact_json(body)
                if not page.has_more:
                    break
                params = {**params, "page[after]": [fields["meta"]["after_cursor"]]}


def test_a_lone_surrogate_still_goes_out_escaped() -> None:
    payload = {"audit_logs": [{"id": 1, "s": "\ud800 lone", "t": "\u00e9"}], "count": 1}
    joined = json_text_response(200, compact_json(payload))
    assert joined.body == json_response(200, payload).body
    assert joined.body == json.dumps(payload, separators=(",", ":")).encode("ascii")
