"""A backfill reader's page all of one second proves nothing until its order shows.

A page whose records share one second looks the same oldest first and newest first. A
server that ignores the sort of a query (a downward reader's ``sort=-created_at``
answered oldest first, or an upward reader's ``sort=created_at`` newest first) hands such
a page when a burst fills it, and the old code took its one second as the reader's
frontier: a downward reader "proved" everything after the burst read, the upward reader's
next page passed it, the slice was done and the run said success with 1,100 of 3,000
records never read, for good (the watermark at the window's end); an upward reader
answered newest first checkpointed the newest burst, and the healthy rerun skipped the
2,850 records below it. A reader's frontier is proof once a page shows a later (up) or
earlier (down) second than its first, or its query ends (``etl.sync.slices.Reader``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from loopback import Exchange, LoopbackServer
from support import (
    assert_table_matches,
    audit_record,
    fake_time_client,
    fresh_store,
    recent,
    sim_account,
    stored_rows,
)

from etl.common.errors import EtlError, ExitCode
from etl.sync.account import sync_account
from etl.sync.run import RunHooks, RunSummary

BURSTS, BURST = 20, 150  # records of one second, more than a page: every page is one second


class SortIgnoring:
    """A cursor-paged audit log, correct but for ``mode``: ``down_ascending`` answers
    newest-first queries oldest first, ``up_descending`` oldest-first ones newest first.
    Downward answers come slower, so the upward reader's next page is taken first."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = sorted(records, key=lambda r: (r["created_at"], r["id"]))
        self.mode = "healthy"
        self.server = LoopbackServer(self.respond)

    def respond(self, exchange: Exchange) -> None:
        query = parse_qs(urlsplit(exchange.path).query)
        start, end = query["filter[created_at][]"]
        asked_down = query["sort"][0] == "-created_at"
        newest_first = {"down_ascending": False, "up_descending": True}.get(self.mode, asked_down)
        chosen = [r for r in self.records if start <= r["created_at"] <= end]
        if newest_first:
            chosen.reverse()
        time.sleep(0.3 if asked_down else 0.02)
        size = int(query["page[size]"][0])
        offset = int(query["page[after]"][0]) if "page[after]" in query else 0
        more = offset + size < len(chosen)
        exchange.send_json(
            {
                "audit_logs": chosen[offset : offset + size],
                "meta": {"has_more": more, "after_cursor": str(offset + size)},  # as Zendesk
                "links": {"next": None},
            }
        )


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("mode", ["down_ascending", "up_descending"])
def test_a_page_of_one_second_proves_nothing_until_the_order_shows(db_url: str, mode: str) -> None:
    end = recent(30)
    records = [
        audit_record(burst * BURST + n + 1, end - timedelta(days=20, hours=-20 * burst))
        for burst in range(BURSTS)
        for n in range(BURST)
    ]
    server = SortIgnoring(records)
    with server.server:
        account = sim_account(server.server.url, retry_budget=3.0, workers=4)
        store = fresh_store(db_url)

        def sync() -> RunSummary:
            with fake_time_client(account) as client:
                return sync_account(account, client, store, hooks=RunHooks())

        server.mode = mode
        try:
            summary = sync()
        except EtlError as exc:  # the order broken on a later page: corrupt, retried
            assert exc.exit_code == ExitCode.UPSTREAM, exc
        else:  # a success stored everything
            assert summary.status == "success"
            assert_table_matches(db_url, records)
        stored = {row["id"] for row in stored_rows(db_url)}
        watermark = store.watermark("acme")
        below = [r["id"] for r in records if watermark and _time(r["created_at"]) < watermark]
        assert not set(below) - stored, "the watermark passes records never stored"

        server.mode = "healthy"
        assert sync().status == "success"
        assert_table_matches(db_url, records)
