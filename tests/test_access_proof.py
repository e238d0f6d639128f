"""A checkpoint moves only as far as the answers prove (issue 23), on the sequential read
(one reader: ``etl.sync.account._read_pages``) of the access log and of the audit log.

Each read is stopped after a page that proves less than its window: the stored watermark
must be exactly what the committed pages proved (not the window's end, not a second
more), and a later run must store every record once. A newest-first answer of one second
(a server that ignores the sort) proves nothing, so it must not move the watermark either,
nor must the next newest-first answer that follows its cursor.
In process, against the simulator, on every database.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from access_support import ACCESS_PATH, access_record, assert_access_matches
from parts.simulators import Simulators
from support import (
    assert_table_matches,
    audit_record,
    fake_time_client,
    fresh_store,
    recent,
    sim_account,
    with_sync,
)

from etl.common.errors import InterruptedRun, RequestRejectedError
from etl.common.settings import AccountSettings
from etl.storage.streams import StreamStore
from etl.sync.account import sync_account
from etl.sync.run import RunHooks, RunSummary
from etl.sync.streams import ACCESS_LOGS, sync_stream
from zendesk_sim import Fault, SimulatedZendesk

LOGS = ("access_logs", "audit_logs")
AUDIT_PATH = "/api/v2/audit_logs"
PAGE = 5  # records a page: a few pages from a few records


def make_records(log: str, moments: Sequence[datetime]) -> list[dict[str, Any]]:
    """One record of ``log`` at each of ``moments``, ids in the same order."""
    if log == "access_logs":
        return [access_record(f"01HPROOF{n:018d}", at) for n, at in enumerate(moments, 1)]
    return [audit_record(n, at) for n, at in enumerate(moments, 1)]


def serve(make_sim: Simulators, log: str, records: list[dict[str, Any]]) -> SimulatedZendesk:
    if log == "access_logs":
        return make_sim([], access_records=records)
    return make_sim(records)


def path_of(log: str) -> str:
    return ACCESS_PATH if log == "access_logs" else AUDIT_PATH


def account_for(url: str) -> AccountSettings:
    # One reader: the read these checkpoints come from (a backfill proves its own way).
    return with_sync(sim_account(url, page_size=PAGE), workers=1)


def sync(log: str, url: str, db_url: str, stop_after: int | None = None) -> RunSummary:
    """One sync of ``log``; with ``stop_after``, stopped (as by SIGTERM) once that many
    pages are committed."""
    account = account_for(url)
    stop = threading.Event()

    def on_page(summary: RunSummary, _position: datetime | None) -> None:
        if stop_after is not None and summary.pages >= stop_after:
            stop.set()

    hooks = RunHooks(stop=stop, on_page=on_page)
    store = fresh_store(db_url)
    try:
        with fake_time_client(account) as client:
            if log == "access_logs":
                state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
                return sync_stream(ACCESS_LOGS, account, client, state, hooks=hooks)
            return sync_account(account, client, store, hooks=hooks)
    finally:
        store.engine.dispose()


def watermark(log: str, db_url: str) -> datetime | None:
    store = fresh_store(db_url)
    try:
        if log == "access_logs":
            return StreamStore(store, "access_logs", ACCESS_LOGS.table).watermark("acme")
        return store.watermark("acme")
    finally:
        store.engine.dispose()


def assert_all_stored(log: str, db_url: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Every record exactly once, as sent: none lost, none duplicated."""
    if log == "access_logs":
        assert_access_matches(db_url, records)
    else:
        assert_table_matches(db_url, records)


@pytest.mark.parametrize("log", LOGS)
def test_a_stopped_read_checkpoints_exactly_what_its_pages_proved(
    log: str, db_url: str, make_sim: Simulators
) -> None:
    end = recent(60)
    # Twenty records five minutes apart, the last an hour before the window's end: pages
    # of five, so the second page ends short of the window by far more than the overlap.
    moments = [end - timedelta(hours=2) + timedelta(minutes=5 * n) for n in range(20)]
    records = make_records(log, moments)
    sim = serve(make_sim, log, records)

    with pytest.raises(InterruptedRun):
        sync(log, sim.url, db_url, stop_after=2)
    # Two pages read: they prove the log read up to the tenth record's second, no further.
    assert watermark(log, db_url) == moments[2 * PAGE - 1]
    assert_all_stored(log, db_url, records[: 2 * PAGE])

    summary = sync(log, sim.url, db_url)  # the next run reads on from there
    assert summary.status == "success", summary.error
    assert_all_stored(log, db_url, records)
    assert summary.watermark_after is not None and summary.watermark_after >= moments[-1]


@pytest.mark.parametrize("in_a_row", [1, 2], ids=["one-answer", "two-answers"])
@pytest.mark.parametrize("log", LOGS)
def test_a_newest_first_page_of_one_second_moves_no_checkpoint(
    log: str, in_a_row: int, db_url: str, make_sim: Simulators
) -> None:
    end = recent(60)
    # Ten records over the hour three hours back, then five of one second: a server that
    # ignores the sort answers those five first, in an order an ascending one could give.
    older = [end - timedelta(hours=3) + timedelta(minutes=6 * n) for n in range(10)]
    newest = [end - timedelta(minutes=20)] * PAGE
    records = make_records(log, [*older, *newest])
    sim = serve(make_sim, log, records)
    sim.inject(Fault("descending", path=path_of(log), times=in_a_row))

    # The next request's cursor is of the newest-first order: refused (a 400), the run
    # stops with the first page committed. Two answers in a row: the second walks on
    # newest first from that cursor (five older records, newest first), is refused as out
    # of order and asked again: the cursor is refused then.
    with pytest.raises(RequestRejectedError, match="restarts from the last checkpoint"):
        sync(log, sim.url, db_url)
    answered = [(r.fault, r.status) for r in sim.requests if r.path == path_of(log)]
    assert answered == [("descending", 200)] * in_a_row + [(None, 400)]
    # Five records of one second prove no order: nothing is proven read, the first run's
    # watermark stays unset (one at the newest second would skip every older record).
    assert watermark(log, db_url) is None
    assert_all_stored(log, db_url, records[-PAGE:])

    summary = sync(log, sim.url, db_url)
    assert summary.status == "success", summary.error
    assert_all_stored(log, db_url, records)
