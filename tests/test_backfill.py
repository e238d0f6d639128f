"""Parallel backfill (etl/sync/backfill.py): exact, resumable per slice, within the rate budget."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import run_cli
from parts.configs import write_config
from support import (
    FETCH_BOUND,
    SIM_OAUTH_TOKEN,
    assert_table_matches,
    audit_record,
    count_rows,
    fake_time_client,
    fresh_store,
    parse_zendesk_time,
    recent,
    sim_account,
    stored_rows,
    wait_until,
)

from etl.common.errors import ConfigError, DatabaseError, RequestRejectedError
from etl.common.settings import AccountSettings
from etl.config import loader as config
from etl.storage.engine import open_engine
from etl.storage.store import BatchTransaction, Store, WriteResult
from etl.sync import backfill, writer
from etl.sync.account import resync_account, sync_account
from etl.sync.plan import Plan
from etl.sync.run import RunHooks, RunSummary
from etl.sync.window import BOUND_SLACK, plan_window
from etl.zendesk.client import ZendeskClient
from zendesk_sim import Fault, SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent
DENSE = 250  # records in one second: they straddle pages of 100


def run(account: AccountSettings, store: Store, **hooks: Any) -> RunSummary:
    with fake_time_client(account) as client:
        return sync_account(account, client, store, hooks=RunHooks(**hooks))


def uneven_history(end: datetime, seed: int = 5) -> list[dict[str, Any]]:
    """Sparse years, a dense recent week, and seconds holding hundreds of records."""
    records = list(generate_records(600, start=end - timedelta(days=700), end=end, seed=seed))
    records += list(generate_records(2500, start=end - timedelta(days=7), end=end, seed=seed + 1))
    for n, days in enumerate((6.5, 3.2, 1.1)):
        second = (end - timedelta(days=days)).replace(microsecond=0)
        base = 7_700_000_000_000 + n * 10_000
        records += [audit_record(base + i, second) for i in range(DENSE)]
    return list({r["id"]: r for r in records}.values())  # two generated sets may share ids


def list_queries(sim: SimulatedZendesk) -> list[dict[str, list[str]]]:
    return [r.query for r in sim.requests if r.path.startswith("/api/v2/audit_logs")]


def query_starts(sim: SimulatedZendesk) -> list[datetime]:
    """The created_at start of every query's first page (not of cursor follow-ups)."""
    return [
        parse_zendesk_time(q["filter[created_at][]"][0])
        for q in list_queries(sim)
        if "filter[created_at][]" in q and "page[after]" not in q
    ]


# -- exactness ----------------------------------------------------------------------------


def test_parallel_first_sync_equals_the_simulator(db_url: str) -> None:
    records = uneven_history(recent(30))
    # Clearly fetch-bound even when a busy machine slows the writer: else the backfill
    # rightly starts no other fetcher, and nothing here would be read in slices.
    with SimulatedZendesk(records, latency=0.25) as sim:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        summary = run(account, store)
        assert summary.status == "success"
        assert summary.inserted == len(sim.visible_records())
        assert_table_matches(db_url, sim.visible_records())
        readers = len(set(query_starts(sim)))
        # It really was read by several fetchers: a slice read from both ends and a split
        # at least (fewer than the old time splits: a pair needs no split point).
        assert readers >= 3
        # little waste: where two readers meet or a reader crosses a cut, a partial page
        assert summary.requests <= -(-len(records) // 100) + readers, readers
        assert store.slices("acme") == []  # the finished plan is gone
        assert summary.window is not None
        assert store.watermark("acme") == summary.window.end


def test_followers_go_on_along_the_queries_their_readers_left(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The downward reader stops short after each page here (and the window is one slice),
    so it is read downwards by a chain of followers: each goes on with the query the one
    before left (a cursor follow-up), none starts a query of its own, and the table is
    exact."""
    monkeypatch.setattr(backfill, "HANDOVER_PAGES", float("inf"))
    monkeypatch.setattr(Plan, "split_candidate", lambda *_, **__: None)
    end = recent(30)
    # 30 pages, some 15 of them read downwards, each by a new follower: 6,000 records were
    # twice as many of the same hand-overs, 0.1 s a page.
    records = generate_records(3000, start=end - timedelta(days=3), end=end, seed=12)
    with SimulatedZendesk(records, latency=0.1) as sim:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        summary = run(account, store)
        assert summary.status == "success"
        assert_table_matches(db_url, sim.visible_records())
        fresh = [q for q in list_queries(sim) if "page[after]" not in q]
        down = [q for q in fresh if q["sort"] == ["-created_at"]]
        followed = [
            q for q in list_queries(sim) if q["sort"] == ["-created_at"] and "page[after]" in q
        ]
        assert followed  # the downward readers stopped and were followed
        assert len(fresh) == 2 and len(down) == 1, fresh  # one slice: up, and down once
        assert store.slices("acme") == []


def test_a_writer_bound_backfill_starts_no_other_fetcher(sqlite_url: str) -> None:
    """When pages wait for the writer, more fetchers would only compete with it for the
    CPU: the window is read by the one fetcher that bounds it, in one slice."""
    end = recent(30)
    records = generate_records(8000, start=end - timedelta(days=30), end=end, seed=8)
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)  # workers = 4
        store = fresh_store(sqlite_url)
        summary = run(account, store, on_page=lambda *_: time.sleep(0.2))  # a slow writer
        assert summary.status == "success"
        assert len(query_starts(sim)) == 1
        # 80 full pages, the last one's cursor confirming the end (an empty 81st)
        assert summary.requests == summary.pages == 81
        assert_table_matches(sqlite_url, sim.visible_records())


@pytest.mark.parametrize("inclusive_start", [True, False], ids=["start-in", "start-ex"])
@pytest.mark.parametrize("inclusive_end", [True, False], ids=["end-in", "end-ex"])
def test_slice_boundaries_inside_dense_seconds_lose_nothing(
    sqlite_url: str, inclusive_start: bool, inclusive_end: bool
) -> None:
    """Every boundary of a plan lands on a second of 250 records, whatever the bounds do."""
    end = recent(30)
    records = uneven_history(end)
    dense = sorted({parse_zendesk_time(r["created_at"]) for r in records if r["id"] > 7.7e12})
    with SimulatedZendesk(
        records, inclusive_start=inclusive_start, inclusive_end=inclusive_end
    ) as sim:
        account = sim_account(sim.url)
        store = fresh_store(sqlite_url)
        window = plan_window(None, account, datetime.now(dense[0].tzinfo))
        cuts = [window.start, *dense, window.end]
        spans = [
            (cuts[i] - (BOUND_SLACK if i else timedelta(0)), cuts[i + 1])
            for i in range(len(cuts) - 1)
        ]
        store.add_slices("acme", spans)
        summary = run(account, store)
        assert summary.status == "success"
        assert_table_matches(sqlite_url, sim.visible_records())
        for second in dense:  # the slice after each boundary starts one second before it
            assert second - BOUND_SLACK in query_starts(sim)


def test_the_watermark_never_passes_the_contiguous_read_prefix(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Smaller batches and transactions than the defaults: the watermark is checked at more
    # points, and transactions of several batches are among them.
    monkeypatch.setattr(writer, "BATCH_ROWS", 300)
    monkeypatch.setattr(writer, "TRANSACTION_ROWS", 700)
    records = uneven_history(recent(30), seed=9)
    with SimulatedZendesk(records) as sim, _reader(db_url) as reader:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        truth = [(parse_zendesk_time(r["created_at"]), r["id"]) for r in sim.visible_records()]
        checked: list[datetime] = []

        def check(summary: RunSummary, position: datetime | None) -> None:
            watermark = store.watermark("acme")
            if watermark is None:
                return
            # Only the ids committed, on an engine of its own as a reader's: the check runs
            # after each of some forty pages, and whole rows read afresh each time cost more
            # CPU than the run they check.
            with reader.connect() as conn:
                stored = set(conn.execute(STORED_IDS).scalars())
            missing = [n for created, n in truth if created < watermark and n not in stored]
            assert not missing, f"watermark {watermark} passes {len(missing)} unstored records"
            for s in store.slices("acme"):
                if not s.done:
                    assert watermark <= (s.position or s.start)
            checked.append(watermark)

        summary = run(account, store, on_page=check)
        assert summary.status == "success"
        assert len(checked) >= 5 and checked == sorted(checked)
        assert_table_matches(db_url, sim.visible_records())


STORED_IDS = sa.text("SELECT id FROM zendesk_audit_logs WHERE account = 'acme'")


@contextmanager
def _reader(db_url: str) -> Iterator[sa.Engine]:
    engine = open_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def test_a_backfill_stopped_in_many_slices_leaves_a_watermark_that_claims_only_stored_records(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 23: a checkpoint moves only as far as the answers prove. A backfill that an
    error stops mid-way, its window in several slices read to different points: the
    watermark it leaves (what ``status``, the lag metric and ``reconcile``'s default period
    take as stored) passes no record that is not, and stays at or below every unfinished
    slice's read point; the next sync then stores every record exactly once and ends at
    the window's end. The next sync resumes every unfinished slice whatever the watermark
    says, so a watermark too high shows here, between the two runs, not in its table.
    Fetch-bound (a latency per request), so the window really is read in slices: a
    writer-bound run reads one slice, where any read point is the lowest. On a busy host
    the writer falls behind even so, and a run that adds no fetcher then reads one slice:
    here fetchers are added whatever waits for the writer (the queue holds all 20 pages)."""
    monkeypatch.setattr(backfill, "WRITER_BEHIND_PAGES", 1_000)
    end = recent(30)
    records = list(generate_records(2_000, start=end - timedelta(days=10), end=end, seed=23))
    with SimulatedZendesk(records, latency=0.25) as sim:
        sim.inject(Fault("status", status=400, skip=10))  # about half the window's 20 pages
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        with pytest.raises(RequestRejectedError):
            run(account, store)
        unfinished = [s for s in store.slices("acme") if not s.done]
        assert len({s.position or s.start for s in unfinished}) >= 2, unfinished
        watermark = store.watermark("acme")  # the first slice's first page committed
        assert watermark is not None
        with _reader(db_url) as reader, reader.connect() as conn:
            stored = set(conn.execute(STORED_IDS).scalars())
        passed = [
            r["id"]
            for r in sim.visible_records()
            if parse_zendesk_time(r["created_at"]) < watermark and r["id"] not in stored
        ]
        assert not passed, f"watermark {watermark} passes {len(passed)} unstored records"
        assert watermark <= min(s.position or s.start for s in unfinished)
        summary = run(account, store)
        assert summary.status == "success" and summary.window is not None
        assert_table_matches(db_url, sim.visible_records())
        assert store.slices("acme") == []
        assert store.watermark("acme") == summary.window.end


class CountingStore(Store):
    """A store that records the rows of each batch, grouped by committed transaction; with
    ``fail_joining``, the first batch to join a transaction that already holds one (after
    a first committed transaction) fails with a database error."""

    def __init__(self, db_url: str, *, fail_joining: bool = False) -> None:
        super().__init__(fresh_store(db_url).engine)
        self.transactions: list[list[int]] = []
        self.rolled_back: list[int] = []
        self.fail_joining = fail_joining

    @contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        batches: list[int] = []
        with super().transaction() as transaction:
            write = transaction.write_batch

            def counted(*args: Any, **kwargs: Any) -> WriteResult:
                if self.fail_joining and batches and self.transactions:
                    self.rolled_back = batches
                    raise DatabaseError("injected: the database went away")
                result = write(*args, **kwargs)
                batches.append(len(args[2]))
                return result

            transaction.write_batch = counted  # type: ignore[method-assign]
            yield transaction
        self.transactions.append(batches)


def test_queued_batches_share_a_transaction_up_to_its_rows(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "BATCH_ROWS", 200)
    monkeypatch.setattr(writer, "TRANSACTION_ROWS", 1000)
    end = recent(30)
    records = generate_records(6000, start=end - timedelta(days=30), end=end, seed=21)
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)
        store = CountingStore(sqlite_url)
        summary = run(account, store, on_page=lambda *_: time.sleep(0.02))  # pages queue up
        assert summary.status == "success"
        assert_table_matches(sqlite_url, sim.visible_records())
        shared = [t for t in store.transactions if len(t) > 1]
        assert shared, f"no transaction held two batches: {store.transactions}"
        for batches in store.transactions:  # it stops adding batches once it has 1,000 rows
            assert sum(batches[:-1]) < 1000
        assert sum(map(sum, store.transactions)) == summary.records


def test_a_failed_transaction_of_several_batches_loses_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write failing in the middle of a transaction rolls back its earlier batches too:
    none of them may count as stored or move the watermark, and the next run stores them."""
    monkeypatch.setattr(writer, "BATCH_ROWS", 200)
    monkeypatch.setattr(writer, "TRANSACTION_ROWS", 1000)
    records = uneven_history(recent(30), seed=23)
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)
        store = CountingStore(db_url, fail_joining=True)
        with pytest.raises(DatabaseError, match="injected"):
            run(account, store, on_page=lambda *_: time.sleep(0.02))  # pages queue up
        assert store.rolled_back  # batches were written, then rolled back with the failure
        stored = {row["id"] for row in stored_rows(db_url)}
        assert len(stored) == sum(map(sum, store.transactions))  # the committed ones only
        (status,) = store.account_status("acme")
        assert status.last_run is not None and status.last_run.status == "failed"
        assert status.last_run.rows_inserted == len(stored)
        watermark = store.watermark("acme")
        assert watermark is None or all(
            r["id"] in stored
            for r in sim.visible_records()
            if parse_zendesk_time(r["created_at"]) < watermark
        )
        store.fail_joining = False
        summary = run(account, store)
        assert summary.status == "success"
        assert_table_matches(db_url, sim.visible_records())


def test_nothing_new_over_a_long_window_costs_one_request(sqlite_url: str) -> None:
    with SimulatedZendesk([audit_record(1, recent(60 * 24 * 400))]) as sim:
        account = sim_account(sim.url)
        store = fresh_store(sqlite_url)
        summary = run(account, store)  # a window of 19 years: the parallel path
        assert (summary.requests, summary.inserted) == (1, 1)
        assert store.slices("acme") == []


# -- one rate budget ------------------------------------------------------------------------


def test_workers_share_one_budget_at_its_ceiling(sqlite_url: str) -> None:
    """600/min and 0.3 s a response: sequential would do 3.3 requests/s, the budget 10.
    The workers read in parallel and never beyond the budget; how near its ceiling they
    get is speed, measured by the envelope bench (a busy host slows them, never speeds)."""
    end = recent(30)
    records = generate_records(4500, start=end - timedelta(days=3), end=end, seed=4)
    with SimulatedZendesk(records, rate_limit_per_minute=600, latency=0.3) as sim:
        account = sim_account(sim.url, requests_per_minute=600)
        store = fresh_store(sqlite_url)
        with ZendeskClient(account.zendesk) as client:  # real time
            summary = sync_account(account, client, store)
        assert summary.status == "success"
        assert summary.rate_limited == 0
        assert sim.peak_in_flight >= 2  # in parallel: one at a time would be sequential
        times = sorted(r.time for r in sim.requests)
        assert len(times) == summary.requests >= 45
        rate = (len(times) - 1) / (times[-1] - times[0])
        assert rate <= 10.5, rate
        # Never a burst above the budget: 20 requests take 2 s at 10/s; 1.5 s leaves room
        # for a busy host's delay between the limiter's release and the server's clock.
        for i in range(len(times) - 20):
            assert times[i + 20] - times[i] >= 1.5
        assert_table_matches(sqlite_url, sim.visible_records())


# -- failures and stops ----------------------------------------------------------------------


def test_a_fetch_failure_keeps_what_was_committed_and_the_next_run_finishes(
    db_url: str,
) -> None:
    records = uneven_history(recent(30), seed=13)
    with SimulatedZendesk(records) as sim:
        sim.inject(Fault("status", status=400, skip=12))
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        with pytest.raises(RequestRejectedError):
            run(account, store)
        (status,) = store.account_status("acme")
        assert status.last_run is not None and status.last_run.status == "failed"
        # Usually part of the history; under load the other fetchers can bring in every
        # record before the failure stops them (the failed request may re-read a page).
        assert 0 < status.rows <= len(records)
        assert store.slices("acme")  # the plan stays for the next run
        summary = run(account, store)
        assert summary.status == "success"
        assert_table_matches(db_url, sim.visible_records())
        assert store.slices("acme") == []


def test_resync_in_parallel_keeps_the_watermark_and_no_plan(db_url: str) -> None:
    records = uneven_history(recent(30), seed=17)
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        first = run(account, store)
        watermark = store.watermark("acme")
        sim.add_records(
            [audit_record(7_900_000_000_000 + i, recent(60 * 24 * 3)) for i in range(5)]
        )
        with fake_time_client(account) as client:
            again = resync_account(account, client, store, since=first.window.start)  # type: ignore[union-attr]
        assert (again.status, again.inserted, again.updated) == ("success", 5, 0)
        assert store.watermark("acme") == watermark
        assert store.slices("acme") == []
        assert [r.kind for r in store.recent_runs("acme")] == ["resync", "sync"]
        assert_table_matches(db_url, sim.visible_records())


# -- the real command line: kill -9 and SIGTERM ---------------------------------------------------


# The pace the kill test's simulator advertises (the job paces by it): three times
# Zendesk's 700 a minute, some 35 pages a second, slow enough that a kill lands within a
# few pages of the rows it waited for (a few hundred rows past them, measured) and fast
# enough not to wait out Zendesk's minute: at 700 the test took 20 s a database, now 8.
KILL_PACE = 2_100


@pytest.fixture
def big_sim() -> Iterator[SimulatedZendesk]:
    # Enough that the four kills (after 500 to 4,000 more rows each; seed 7 draws 7,700 in
    # all) land mid-backfill; the density of the 20,000 over 20 days this was.
    end = recent(30)
    records = generate_records(10_000, start=end - timedelta(days=10), end=end, seed=21)
    with SimulatedZendesk(records, latency=FETCH_BOUND, advertised_limit=KILL_PACE) as sim:
        yield sim


def cli_command(
    tmp_path: Path, sim: SimulatedZendesk, db_url: str, requests_per_minute: int = 5000
) -> list[str]:
    path = write_config(
        tmp_path,
        db_url,
        sim.url,
        zendesk={"requests_per_minute": requests_per_minute},
        sync={"workers": 4},
        database={"auto_migrate": True},
    )
    return [sys.executable, "-m", "etl", "--config", str(path), "--quiet", "sync"]


CLI_ENV = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}


def finish_in_process(command: list[str], sim: SimulatedZendesk) -> CompletedProcess[str]:
    """The run after the kills, in this process (what it does is the subject, not how it
    is started), against a simulator that now answers at once: the pace mattered only
    for where the kills landed."""
    sim.latency = 0.0
    return run_cli(*command[command.index("--config") :])


# Paced by the headers' KILL_PACE: 100 pages, so four kills land mid-way. The database
# starts migrated (from the template): the migrations are not the subject here but in
# test_kill, whose first runs start on an empty database.
def test_kill_9_mid_backfill_resumes_every_slice_from_its_checkpoint(
    migrated_url: str, tmp_path: Path, big_sim: SimulatedZendesk
) -> None:
    sim, db_url = big_sim, migrated_url
    command = cli_command(tmp_path, sim, db_url)
    rng = random.Random(7)
    resumed_checks = 0
    plan: list[Any] = []
    engine = open_engine(db_url)
    # Four kills: the first leaves the slices the next three must resume, each checked
    # below (a dozen checks; six kills took a third of the time more for more of the same).
    for _ in range(4):
        sim.clear_log()
        before = count_rows(engine)
        proc = subprocess.Popen(command, env=CLI_ENV, cwd=ROOT, stderr=subprocess.DEVNULL)
        # Mid-backfill: a random number of pages more committed (or the run over).
        more = rng.randint(5, 40) * 100
        wait_until(
            lambda: proc.poll() is not None or count_rows(engine) >= before + more,  # noqa: B023
            f"{more} more rows committed",
        )
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
        # Each slice this run went back to (how many it reads at once follows the measured
        # latency): it must have resumed from its checkpoint, never from the slice's start.
        started = set(query_starts(sim))
        for s in plan:
            if s.done or s.position is None or s.position - BOUND_SLACK <= s.start:
                continue
            read_here = sorted(t for t in started if s.start <= t < s.end)
            if read_here:  # a split's new slice starts later than the checkpoint
                assert read_here[0] == s.position - BOUND_SLACK, (s, read_here)
                resumed_checks += 1
        plan = Store(engine).slices("acme")
        if code == 0:
            break
    engine.dispose()
    assert resumed_checks >= 2, "no kill landed mid-backfill with slices in progress"
    final = finish_in_process(command, sim)
    assert final.returncode == 0, final.stderr
    assert_table_matches(db_url, sim.visible_records())
    engine = open_engine(db_url)
    assert Store(engine).slices("acme") == []
    engine.dispose()


# Read at no more than 10 pages of 100 a second (the job keeps to its requests_per_minute):
# a SIGTERM sent once 1,000 rows are committed lands with seconds of backfill to go however
# fast the machine; the run that resumes goes at full speed.
PACED_RECORDS = 4_000


@pytest.fixture
def paced_sim() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    records = generate_records(PACED_RECORDS, start=end - timedelta(days=4), end=end, seed=21)
    with SimulatedZendesk(records, latency=FETCH_BOUND) as sim:
        yield sim


def test_sigterm_mid_backfill_exits_130_and_resumes(
    db_url: str, tmp_path: Path, paced_sim: SimulatedZendesk
) -> None:
    big_sim = paced_sim
    command = cli_command(tmp_path, big_sim, db_url, requests_per_minute=600)
    engine = open_engine(db_url)
    proc = subprocess.Popen(command, env=CLI_ENV, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: count_rows(engine) >= 1000, "the backfill's first pages committed")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 30  # acted on, not left to run out the backfill
    assert "Traceback" not in stderr
    engine.dispose()
    engine = open_engine(db_url)
    store = Store(engine)
    (status,) = store.account_status("acme")
    assert status.last_run is not None and status.last_run.status == "interrupted"
    assert 0 < status.rows < PACED_RECORDS
    assert store.slices("acme")
    engine.dispose()
    final = finish_in_process(cli_command(tmp_path, big_sim, db_url), big_sim)
    assert final.returncode == 0, final.stderr
    assert_table_matches(db_url, big_sim.visible_records())


# -- configuration ------------------------------------------------------------------------------


MINIMAL = '[zendesk]\nsubdomain = "acme"\noauth_token = "t"\n'


def test_workers_and_parallel_after_are_configured_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(MINIMAL)
    path.chmod(0o600)
    (account,) = config.load(path, environ={}).accounts
    assert (account.sync.workers, account.sync.parallel_after) == (64, timedelta(days=1))
    path.write_text(MINIMAL + '[sync]\nworkers = 1\nparallel_after = "6h"\n')
    (account,) = config.load(path, environ={}).accounts
    assert (account.sync.workers, account.sync.parallel_after) == (1, timedelta(hours=6))
    path.write_text(MINIMAL + '[sync]\nworkers = 0\nparallel_after = "soon"\n')
    with pytest.raises(ConfigError) as err:
        config.load(path, environ={})
    assert "sync.workers" in str(err.value) and "sync.parallel_after" in str(err.value)


def test_a_parallel_backfills_corrupt_answers_are_counted(sqlite_url: str) -> None:
    """Each fetcher has its own client: their corrupt answers reach the run's summary."""
    from zendesk_sim import Fault

    # fetch-bound, so most requests are the other fetchers' (see the first test above)
    with SimulatedZendesk(uneven_history(recent(30), seed=29), latency=0.25) as sim:
        sim.inject(*[Fault("truncate", skip=2) for _ in range(8)])
        summary = run(sim_account(sim.url), fresh_store(sqlite_url))
        assert summary.status == "success"
        assert summary.corrupt == 8  # each retried, then read whole
        assert_table_matches(sqlite_url, sim.visible_records())
