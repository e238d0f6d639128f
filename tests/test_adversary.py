"""A red-team round's hand-made servers: each breaks one promise the job relied on, and
the run must store the right rows, moving its checkpoint only as far as proven.

``Honest`` is a cursor API over fixed records on loopback (window, sort, page size and
cursor honoured, its cursors opaque and tied to their query) until its ``mode`` breaks
one promise. Found in that round (docs/RELIABILITY.md): a full page that says it is the
last (``has_more`` false) ended the query, and the rest of the window was taken as read
in a run that reported success; an id sent as a float past 2**53 was stored over another
record's row. In a later one: a page of one burst second answered, once, with the page
before's records and its own cursor (the records it stood for lost). Kept beside them,
as not covered elsewhere: cursors that need URL-encoding come back exactly, and times
with offsets other than ``Z`` are judged as instants.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from loopback import Exchange, LoopbackServer
from support import FakeTime, fresh_store, recent, sim_account, stored_rows, zendesk_time

from etl.records.audit import parse_created_at
from etl.storage.store import Store
from etl.sync.account import sync_account
from etl.sync.run import RunSummary
from etl.zendesk.client import ZendeskClient
from etl.zendesk.ratelimit import RateLimiter

PAGE = 100
SPACING = timedelta(seconds=40)
# What a cursor may hold that a URL may not, as it is: every byte must come back as sent.
ODD = " &+/=?#%é\u2028;"


def history(n: int) -> list[dict[str, Any]]:
    """``n`` records ``SPACING`` apart, the newest 30 minutes old."""
    first = recent(30) - SPACING * (n - 1)
    return [
        {"id": 1000 + i, "action": "update", "created_at": zendesk_time(first + SPACING * i)}
        for i in range(n)
    ]


class Honest:
    """The audit-log list over ``records`` (each with a usable time), breaking ``mode``."""

    def __init__(self, records: list[dict[str, Any]], mode: str = "honest") -> None:
        # (instant, record as sent): ``_at`` gives the instant of a time no parser reads
        self.records = sorted(
            ((_instant(r), {k: v for k, v in r.items() if k != "_at"}) for r in records),
            key=lambda pair: pair[0],
        )
        self.mode = mode
        self.lock = threading.Lock()
        self.cursors: dict[str, tuple[tuple[str, ...], int]] = {}  # cursor -> (query, offset)
        self.unknown: list[str] = []  # cursors that came back other than they were given
        self.repeated = 0  # pages answered with the page before's records (mode repeat-page)

    def respond(self, exchange: Exchange) -> None:
        pairs = parse_qsl(urlsplit(exchange.path).query, keep_blank_values=True)
        query = tuple(f"{k}={v}" for k, v in pairs if k != "page[after]")
        params: dict[str, list[str]] = {}
        for name, value in pairs:
            params.setdefault(name, []).append(value)
        start, end = (_parse(v) for v in params["filter[created_at][]"])
        chosen = [r for t, r in self.records if start <= t.replace(microsecond=0) <= end]
        if params["sort"][-1].startswith("-"):
            chosen.reverse()
        size = int(params["page[size]"][-1])
        offset = 0
        with self.lock:
            if "page[after]" in params:
                given = params["page[after]"][-1]
                if self.cursors.get(given, (None, 0))[0] != query:
                    self.unknown.append(given)
                    exchange.send(400, {}, b'{"error": "InvalidPaginationParameter"}')
                    return
                offset = self.cursors[given][1]
            after = offset + len(chosen[offset : offset + size])
            cursor = f"c{after}.{len(self.cursors)}" + (ODD if self.mode == "odd-cursor" else "")
            self.cursors[cursor] = (query, after)
        page = chosen[offset : offset + size]
        more = after < len(chosen)
        first = chosen[offset - size : offset] if offset >= size else []
        one_second = first and first[0]["created_at"] == first[-1]["created_at"]
        with self.lock:
            if self.mode == "repeat-page" and one_second and not self.repeated:
                self.repeated += 1
                page = first  # the page before's records (of one second), with this cursor
        if self.mode == "false-end" and len(page) == size:
            more = False  # a whole page with more to come, said to be the last
        body = {"audit_logs": page, "meta": {"has_more": more, "after_cursor": cursor}}
        # json, not orjson: a record may hold what orjson will not write (an int past 64 bits)
        exchange.send(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
def test_a_page_repeated_in_place_of_the_next_is_not_taken(db_url: str, workers: int) -> None:
    """The second page of a burst second answered, once, with the first page's records and
    its own cursor: ties are allowed at the newest second, and a page bringing nothing new
    was only counted towards the stall guard, so the records it stood for were lost for
    good (100 of 600, the watermark past them) in a run that said success."""
    burst = recent(60)
    records = [
        {"id": 5000 + i, "action": "update", "created_at": zendesk_time(burst)} for i in range(300)
    ]
    api = Honest([*records, *history(300)], mode="repeat-page")
    summary, _ = serve(api, db_url, workers)
    assert summary.status == "success" and api.repeated == 1
    assert sorted(row["id"] for row in stored_rows(db_url)) == sorted(
        r["id"] for _, r in api.records
    )
    assert summary.corrupt == 1  # retried: the same cursor brought the page it stands for


def _parse(text: str) -> datetime:
    moment = parse_created_at(text)
    assert moment is not None, text
    return moment


def _instant(record: dict[str, Any]) -> datetime:
    return record.get("_at") or _parse(record["created_at"])


def run(account: Any, store: Store) -> RunSummary:
    clock = FakeTime()
    limiter = RateLimiter(account.zendesk.requests_per_minute, clock=clock.clock, sleep=clock.sleep)
    with ZendeskClient(
        account.zendesk, limiter=limiter, sleep=clock.sleep, clock=clock.clock, jitter=lambda: 0.5
    ) as client:
        return sync_account(account, client, store)


def serve(api: Honest, db_url: str, workers: int) -> tuple[RunSummary, Store]:
    with LoopbackServer(api.respond) as server:
        account = sim_account(server.url, page_size=PAGE, retry_budget=20, workers=workers)
        store = fresh_store(db_url)
        return run(account, store), store


@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
def test_a_full_page_said_to_be_the_last_does_not_end_the_window(db_url: str, workers: int) -> None:
    """Every full page says ``has_more`` false though more follow: before, the run stored
    the first page, set the watermark to the window's end and said success (500 of 600
    records lost for good, by the sequential read; the backfill's slices lost theirs)."""
    api = Honest(history(600), mode="false-end")
    summary, store = serve(api, db_url, workers)
    assert summary.status == "success"
    assert sorted(row["id"] for row in stored_rows(db_url)) == [r["id"] for _, r in api.records]
    assert store.slices("acme") == []
    assert not api.unknown


@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
def test_a_cursor_that_needs_url_encoding_comes_back_as_it_was_given(
    db_url: str, workers: int
) -> None:
    api = Honest(history(350), mode="odd-cursor")
    summary, _ = serve(api, db_url, workers)
    assert summary.status == "success"
    assert not api.unknown  # every cursor came back byte for byte
    assert len(stored_rows(db_url)) == 350


def test_ids_and_times_in_odd_but_valid_forms(db_url: str) -> None:
    """Times with other offsets, fractions and a lowercase ``z`` are instants: in UTC order
    though not in text order, each stored at its UTC second. A leap second and an id sent
    as a float past 2**53 (whose integer is another record's: before, stored over it)
    become rejects; the run goes on and the watermark reaches the end."""
    records = history(250)
    at = {r["id"]: _parse(r["created_at"]) for r in records}
    east = at[1010] + timedelta(hours=5, minutes=30)  # 1010's instant, written in +05:30
    west = at[1011] - timedelta(hours=9)
    records[10]["created_at"] = east.strftime("%Y-%m-%dT%H:%M:%S") + "+05:30"
    records[11]["created_at"] = west.strftime("%Y-%m-%dT%H:%M:%S") + ".75-09:00"
    records[12]["created_at"] = records[12]["created_at"][:-1] + ".123456z"
    records[20] |= {"created_at": records[20]["created_at"][:17] + "60Z", "_at": at[1020]}
    records[30]["id"] = 2**53  # one record, and another sent as 9007199254740993.0
    records[31]["id"] = "FLOAT"
    api = Honest(records)
    with LoopbackServer(lambda ex: api.respond(_float_id(ex, api))) as server:
        account = sim_account(server.url, page_size=PAGE, retry_budget=20, workers=1)
        store = fresh_store(db_url)
        summary = run(account, store)
    assert summary.status == "success"
    assert summary.rejected == 2
    rows = {row["id"]: row for row in stored_rows(db_url)}
    assert len(rows) == 248 and 1020 not in rows and 1031 not in rows
    assert rows[2**53]["raw"]["id"] == 2**53  # not overwritten by the float's record
    for record_id in (1010, 1011, 1012):
        stored = rows[record_id]["created_at"].replace(tzinfo=None)
        assert stored == at[record_id].replace(tzinfo=None), record_id
    watermark = store.watermark("acme")
    assert watermark is not None and watermark >= at[1249]


def _float_id(exchange: Exchange, api: Honest) -> Exchange:
    """Sends record ``FLOAT``'s id as the JSON text ``9007199254740993.0``."""
    send = exchange.send

    def with_float(status: int, headers: dict[str, str], body: bytes) -> None:
        send(status, headers, body.replace(b'"FLOAT"', b"9007199254740993.0"))

    exchange.send = with_float  # type: ignore[method-assign]
    return exchange
