"""The access log's first run in parallel slices, as the audit log's backfill: every record
stored once, a kill resumed, hostile answers never checkpointed past, one budget with the
audit log. Against the simulator over real HTTP, on every database."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from access_support import ACCESS_PATH, access_rows, assert_access_matches, count_access_rows
from support import (
    SIM_OAUTH_TOKEN,
    assert_table_matches,
    fresh_store,
    recent,
    sim_account,
    wait_until,
    with_sync,
)

from etl.common.errors import EtlError
from etl.common.settings import AccountSettings
from etl.storage.engine import open_engine
from etl.storage.store import Store
from etl.storage.streams import StreamStore
from etl.sync.job import sync_each
from etl.sync.run import RunHooks, RunSummary
from etl.sync.streams import ACCESS_LOGS, sync_stream
from etl.zendesk.client import ZendeskClient
from etl.zendesk.ratelimit import RateLimiter
from zendesk_sim import AccessSource, Fault, SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent
BOTH = ("audit_logs", "access_logs")
# Where the pace is not the subject: the job keeps to the lower of its requests_per_minute
# (sim_account's 2,500) and the limit the simulator's headers say (Zendesk's 700 unless
# told): these tests' 60 to 140 pages went 86 ms apart, most of their time when idle.
UNPACED = 100_000
SIM_UNPACED = 1_000_000


def state_of(store: Store) -> StreamStore:
    return StreamStore(store, ACCESS_LOGS.name, ACCESS_LOGS.table)


@pytest.mark.paced
def test_a_parallel_backfill_stores_every_access_record_exactly_once(db_url: str) -> None:
    end = recent(30)
    source = AccessSource(3_000, start=end - timedelta(days=6), end=end, seed=11)
    with SimulatedZendesk(access_records=source, latency=0.005) as sim:
        # Paced (by the headers' 700 a minute, below sim_account's 2,500): unpaced, a writer
        # slower than the reads (on a busy server) keeps the backfill to one fetcher, and
        # this test is about several. 60 pages of 50 (5 s at that pace) read half their
        # pages downwards as 120 did (measured), in half the time.
        account = with_sync(sim_account(sim.url, page_size=50), workers=8, streams=BOTH)
        store = fresh_store(db_url)
        try:
            state = state_of(store)
            with ZendeskClient(account.zendesk) as client:
                summary = sync_stream(ACCESS_LOGS, account, client, state)
            assert state.slices("acme") == []  # the plan is finished and gone
            assert store.slices("acme") == []  # and the audit log's was never touched
            watermark = state.watermark("acme")
        finally:
            store.engine.dispose()
        assert summary.status == "success" and summary.parallel
        assert summary.inserted == len(source) and summary.rejected == 0
        down = [r for r in sim.requests if r.query.get("sort") == ["-timestamp"]]
        assert down, "no slice was read downwards: not the parallel backfill"
        assert summary.window is not None and watermark == summary.window.end
        assert_access_matches(db_url, sim.access_records())  # ids and count, exactly once


def assert_proven_only(db_url: str, records: list[dict[str, object]]) -> None:
    """Every checkpoint (the stream's watermark, each slice's position, a done slice) is
    backed by stored rows: nothing it claims read is missing from the table."""
    stored = {row["id"] for row in access_rows(db_url)}

    def at(record: dict[str, object]) -> datetime:
        return datetime.strptime(str(record["timestamp"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)

    store = fresh_store(db_url)
    try:
        state = state_of(store)
        watermark, slices = state.watermark("acme"), state.slices("acme")
    finally:
        store.engine.dispose()
    assert slices, "a failed backfill keeps its plan"
    if watermark is not None:
        lost = [r["id"] for r in records if at(r) < watermark and r["id"] not in stored]
        assert not lost, f"watermark {watermark} past records not stored: {lost[:5]}"
    for s in slices:
        upto = s.end if s.done else s.position
        if upto is None:
            continue
        lost = [r["id"] for r in records if s.start <= at(r) < upto and r["id"] not in stored]
        assert not lost, f"slice {s.start}..{s.end} checkpointed past {lost[:5]}"


@pytest.mark.parametrize(
    "fault",
    [
        Fault("mangle", mangle="out_of_window", path=ACCESS_PATH, skip=6, times=-1),
        Fault("out_of_window", path=ACCESS_PATH, skip=6, times=-1),
        Fault("descending", path=ACCESS_PATH, skip=6, times=-1),
        Fault("next_link_query", path=ACCESS_PATH, skip=6, times=-1),
    ],
    ids=["dated_2001", "dated_2099", "descending", "next_link_query"],
)
def test_a_hostile_answer_never_moves_a_slice_past_what_is_proven(
    db_url: str, fault: Fault
) -> None:
    end = recent(30)
    # 1,500 records, 30 pages of 50: the fault from the seventh request on, as with 3,000,
    # and the clean rerun reads half as many pages.
    source = AccessSource(1_500, start=end - timedelta(days=5), end=end, seed=12)
    with SimulatedZendesk(access_records=source, rate_limit_per_minute=SIM_UNPACED) as sim:

        def account_with(retry_budget: float) -> AccountSettings:
            zendesk = sim_account(
                sim.url, page_size=50, retry_budget=retry_budget, requests_per_minute=UNPACED
            )
            return with_sync(zendesk, workers=4, streams=BOTH)

        # The hostile run spends its whole retry budget on the fault: a short one, but not
        # so short that a good page answered slowly on a busy machine fails it first.
        account = account_with(retry_budget=2.0)
        sim.inject(fault)
        store = fresh_store(db_url)
        try:
            with ZendeskClient(account.zendesk) as client, pytest.raises(EtlError):
                sync_stream(ACCESS_LOGS, account, client, state_of(store))
        finally:
            store.engine.dispose()
        assert 0 < len(access_rows(db_url)) < len(source)
        assert_proven_only(db_url, sim.access_records())

        sim.clear_faults()
        store, account = fresh_store(db_url), account_with(retry_budget=30.0)  # must finish
        try:
            with ZendeskClient(account.zendesk) as client:
                again = sync_stream(ACCESS_LOGS, account, client, state_of(store))
        finally:
            store.engine.dispose()
        assert again.status == "success"
        assert_access_matches(db_url, sim.access_records())


WINDOW = 2.0  # seconds: the simulator's "minute"
LIMIT = 60  # requests a window


def test_both_streams_backfilled_in_parallel_keep_within_one_budget(db_url: str) -> None:
    end = recent(30)
    audit = generate_records(1_500, start=end - timedelta(days=4), end=end, seed=13)
    source = AccessSource(3_000, start=end - timedelta(days=4), end=end, seed=13)
    with SimulatedZendesk(
        audit, access_records=source, rate_limit_per_minute=LIMIT, rate_limit_window=WINDOW,
        latency=0.02, jitter=0.01,
    ) as sim:  # fmt: skip
        account = with_sync(
            sim_account(sim.url, requests_per_minute=LIMIT, page_size=50), workers=8, streams=BOTH
        )
        limiter = RateLimiter(LIMIT, window=WINDOW)
        store = fresh_store(db_url)
        summaries: list[RunSummary] = []
        try:
            with ZendeskClient(account.zendesk, limiter=limiter) as client:
                sync_each(account, client, store, RunHooks(report=summaries.append))
        finally:
            store.engine.dispose()
        log = sim.requests
        stats = sim.stats()
    assert [(s.stream, s.status, s.parallel) for s in summaries] == [
        ("audit_logs", "success", True),
        ("access_logs", "success", True),
    ]
    assert_table_matches(db_url, sim.visible_records())
    assert_access_matches(db_url, sim.access_records())
    # Counted at the simulator, which refuses every request over LIMIT in its minute: none
    # was, and every request of both streams paid the one budget.
    assert stats["rate_limited"] == 0, stats["by_status"]
    assert sum(s.rate_limited for s in summaries) == 0
    assert limiter.acquired == len(log) == sum(s.requests for s in summaries)
    span = max(r.time for r in log) - min(r.time for r in log)
    assert len(log) <= LIMIT * (math.ceil(span / WINDOW) + 1)


def test_sigkill_mid_parallel_access_backfill_then_a_rerun_loses_and_duplicates_nothing(
    migrated_url: str, tmp_path: Path
) -> None:
    """As tests/test_access_kill.py, with the backfill's plan the subject: paced by the
    budget so the kill lands mid-way, with slices in the plan; the rerun in process. On a
    migrated database (a copy of the template): kills mid-migration are test_kill's."""
    db_url = migrated_url
    end = recent(30)
    # 5,000 records, 100 pages: the kill lands at 1,000 rows (20 pages, 1 s at 1,200 a
    # minute), 4 s before the run could end; the rerun reads 80 pages, not 140.
    source = AccessSource(5_000, start=end - timedelta(days=10), end=end, seed=14)
    sim = SimulatedZendesk(access_records=source, latency=0.01, rate_limit_per_minute=SIM_UNPACED)
    with sim:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 1200\n'
            f'page_size = 50\n[database]\nurl = "{db_url}"\nauto_migrate = true\n'
            '[sync]\nstreams = ["access_logs"]\nworkers = 6\n'
        )
        config.chmod(0o600)
        command = [sys.executable, "-m", "etl", "--config", str(config), "--quiet", "sync"]
        env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        engine = open_engine(db_url)
        try:
            proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            wait_until(
                lambda: proc.poll() is not None or count_access_rows(engine) >= 1_000,
                "1,000 access rows committed",
            )
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
        finally:
            engine.dispose()
        store = fresh_store(db_url)
        try:
            state = state_of(store)
            assert state.slices("acme"), "killed mid-way through the backfill: its plan is kept"
            account = with_sync(
                sim_account(sim.url, page_size=50, requests_per_minute=UNPACED),
                workers=6,
                streams=BOTH,
            )
            with ZendeskClient(account.zendesk) as client:
                again = sync_stream(ACCESS_LOGS, account, client, state)
            assert again.status == "success" and state.slices("acme") == []
        finally:
            store.engine.dispose()
        assert_access_matches(db_url, sim.access_records())
        assert not sim.errors


def test_each_log_has_its_own_plan_and_a_new_scope_drops_only_its_own(db_url: str) -> None:
    start = datetime(2026, 9, 1, tzinfo=UTC)
    spans = [
        (start, start + timedelta(days=1)),
        (start + timedelta(days=1), start + timedelta(days=2)),
    ]
    store = fresh_store(db_url)
    try:
        state = state_of(store)
        audit = store.add_slices("acme", spans[:1])
        access = state.add_slices("acme", spans)
        assert store.slices("acme") == audit and state.slices("acme") == access
        state.set_scope("acme", '{"start_time":null}', restart=True)
        assert state.slices("acme") == [] and store.slices("acme") == audit
        state.add_slices("acme", spans)
        store.set_scope("acme", "{}", restart=True)
        assert store.slices("acme") == [] and len(state.slices("acme")) == 2
        state.finish_plan("acme", start + timedelta(days=2))
        assert state.slices("acme") == [] and state.watermark("acme") == start + timedelta(days=2)
        assert store.watermark("acme") is None  # the audit log's state is its own
    finally:
        store.engine.dispose()
