"""The simulator's bursty shape looks like a busy account (issue 27): seconds shared by a
third of the records, bursts of 20-300 records in one second, about 2% of ids out of
created_at order, long quiet stretches; still ordered by (created_at, id) for the API."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

from zendesk_sim import generate_records

END = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_bursty_shape_has_bursts_out_of_order_ids_and_quiet_stretches() -> None:
    source = generate_records(
        60_000, start=END - timedelta(days=120), end=END, seed=3, shape="bursty"
    )
    times = [source.created_ts(i) for i in range(len(source))]
    ids = [source.record_id(i) for i in range(len(source))]
    shared = sum(times[i] == times[i - 1] for i in range(1, len(times))) / len(times)
    assert 0.25 <= shared <= 0.45, shared
    bursts = [n for n in Counter(times).values() if n >= 20]
    assert len(bursts) >= 50 and max(bursts) <= 300
    out_of_order = sum(ids[i] < ids[i - 1] for i in range(1, len(ids))) / len(ids)
    assert 0.01 <= out_of_order <= 0.03, out_of_order
    assert max(times[i] - times[i - 1] for i in range(1, len(times))) > 3 * 86_400
    # What the listing relies on: (created_at, id) ascends with the index, ids are unique
    # and lead back to their record, and the fast JSON is the record's.
    keys = [source.key(i) for i in range(len(source))]
    assert keys == sorted(keys) and len(set(ids)) == len(ids)
    assert all(source.index_of_id(ids[i]) == i for i in range(len(ids)))
    assert all(source.bisect_left(keys[i]) == i for i in range(0, len(keys), 997))
    for i in range(0, len(source), 7_919):
        assert json.loads(source.fragment(i, source.key(i))) == source[i]


def test_the_even_shape_is_unchanged() -> None:
    """Tests written against the first shape keep their records (ids and times)."""
    source = generate_records(1_000, start=END - timedelta(days=10), end=END, seed=5)
    assert source.shape == "even"
    for i in range(len(source)):  # each id in its own slot, as before
        assert 0 <= source.record_id(i) - 6_100_000_000_000 - i * 7_919 < 7_919
