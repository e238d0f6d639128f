"""The state's scope (filters, start_time) and Zendesk's clock (issues 12.5, 12.6)."""

from __future__ import annotations

import http.server
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.simulators import Simulators
from support import (
    SIM_OAUTH_TOKEN,
    audit_record,
    fake_time_client,
    fresh_store,
    recent,
    sim_account,
)

from etl.cli.commands.check import check_account
from etl.cli.report import scope_text
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.metadata import VERSION_TABLE
from etl.storage.store import Store
from etl.sync.account import resync_account, sync_account
from etl.sync.scope import describe
from etl.zendesk.server_clock import ServerClock, parse_http_date
from zendesk_sim import SimulatedZendesk, generate_records

LAG = timedelta(seconds=61)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def history() -> Any:
    end = recent(30)
    return generate_records(600, start=end - timedelta(hours=6), end=end, seed=5)


@pytest.fixture
def sim(history: Any, make_sim: Simulators) -> SimulatedZendesk:
    return make_sim(history)


def sync(account: Any, store: Store, **kwargs: Any) -> Any:
    with fake_time_client(account) as client:
        return sync_account(account, client, store, **kwargs)


def test_a_changed_filter_reads_the_history_again(
    db_url: str, sim: SimulatedZendesk, history: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = fresh_store(db_url)
    creates = sum(1 for r in history if r["action"] == "create")
    assert 0 < creates < len(history)
    filtered = sim_account(sim.url, lag=LAG, workers=1, filters={"action": ("create",)})
    assert sync(filtered, store).inserted == creates
    assert '"action":["create"]' in (store.account_status("acme")[0].scope or "")
    unfiltered = sim_account(sim.url, lag=LAG, workers=1)
    with caplog.at_level(logging.WARNING, logger="etl.sync.scope"):
        summary = sync(unfiltered, store)
    assert summary.inserted == len(history) - creates
    assert store.account_status("acme")[0].rows == len(history)
    changed = [r for r in caplog.records if "filters or start_time changed" in r.getMessage()]
    assert len(changed) == 1
    # resync reads with its own filters and leaves the scope alone
    with fake_time_client(filtered) as client:
        resync_account(filtered, client, store, since=recent(60 * 7))
    assert store.account_status("acme")[0].scope == describe(unfiltered)
    assert sync(unfiltered, store).inserted == 0


def test_a_moved_host_reads_the_history_again_and_says_so(
    db_url: str, sim: SimulatedZendesk, history: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A watermark read from one Zendesk host says nothing about another's records: the
    same account name moved to another host reads that host's whole history."""
    store = fresh_store(db_url)
    assert sync(sim_account(sim.url, lag=LAG, workers=1), store).inserted == len(history)
    moved = sim_account(sim.url.replace("127.0.0.1", "localhost"), lag=LAG, workers=1)
    with caplog.at_level(logging.WARNING, logger="etl.sync.scope"):
        summary = sync(moved, store)
    first = min(datetime.fromisoformat(r["created_at"]) for r in history)
    assert summary.window is not None and summary.window.start <= first
    assert summary.records == len(history)  # every record read again
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "host changed (localhost, was 127.0.0.1)" in lines[0], lines
    assert '"host":"localhost"' in (store.account_status("acme")[0].scope or "")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="etl.sync.scope"):
        again = sync(moved, store)  # the next run reads from the new host's watermark
    assert again.window is not None and again.window.start > first and not caplog.records


def test_a_scope_recorded_before_the_host_was_in_it_is_adopted(
    db_url: str, sim: SimulatedZendesk
) -> None:
    store = fresh_store(db_url)
    watermark = recent(10)
    store.set_scope("acme", '{"filters":{},"start_time":null}', restart=False)
    store.set_watermark("acme", watermark)
    account = sim_account(sim.url, lag=LAG, workers=1)
    summary = sync(account, store)
    assert summary.window is not None and summary.window.start > watermark - timedelta(hours=1)
    assert store.scope("acme") == (True, describe(account))
    store.set_scope("acme", '{"filters":{"action":["create"]},"start_time":null}', restart=False)
    store.set_watermark("acme", watermark)
    changed = sync(account, store).window  # another filter: not the same scope
    assert changed is not None and changed.start < watermark - timedelta(hours=5)


def test_a_scope_change_drops_an_unfinished_backfill_plan(
    db_url: str, sim: SimulatedZendesk
) -> None:
    store = fresh_store(db_url)
    account = sim_account(sim.url, lag=LAG, workers=1)
    sync(account, store)
    start, end = datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC)
    store.add_slices("acme", [(start, end)])
    sync(sim_account(sim.url, lag=LAG, workers=1, filters={"action": ("update",)}), store)
    assert store.slices("acme") == []


def test_rows_from_before_the_scope_column_are_adopted(db_url: str, sim: SimulatedZendesk) -> None:
    store = fresh_store(db_url)
    watermark = recent(10)
    store.set_watermark("acme", watermark)  # as revision 0002 left it: no scope
    assert store.scope("acme") == (True, None)
    summary = sync(sim_account(sim.url, lag=LAG, workers=1), store)
    assert summary.window is not None and summary.window.start > watermark - timedelta(hours=1)
    assert store.scope("acme")[1] is not None


def test_a_future_watermark_is_moved_back_and_later_records_are_read(
    db_url: str, sim: SimulatedZendesk, history: Any
) -> None:
    store = fresh_store(db_url)
    account = sim_account(sim.url, lag=LAG, workers=1)
    sync(account, store)
    later = [audit_record(10**12 + i, recent(25 - i / 3)) for i in range(50)]
    sim.add_records(later)
    # What old code with a clock 20 minutes fast left: a watermark 15 minutes ahead.
    store.set_watermark("acme", datetime.now(UTC) + timedelta(minutes=15))
    summary = sync(account, store)
    assert summary.inserted == len(later)
    watermark = store.watermark("acme")
    assert watermark is not None and watermark <= datetime.now(UTC) - LAG


def test_a_fast_host_clock_is_bounded_by_zendesk_date(
    db_url: str, sim: SimulatedZendesk, history: Any
) -> None:
    """The simulator refuses end times under 60 s old: the fast clock's first window is
    refused, the refusal's Date tells Zendesk's time, and the window is planned again."""
    store = fresh_store(db_url)
    account = sim_account(sim.url, lag=LAG, workers=1)
    fast = datetime.now(UTC) + timedelta(minutes=20)
    summary = sync(account, store, now=lambda: fast)
    assert summary.status == "success"
    assert summary.inserted == len(history)
    watermark = store.watermark("acme")
    assert watermark is not None and watermark <= datetime.now(UTC) - LAG


class _Wall:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


def test_server_clock_ignores_hostile_dates_and_keeps_the_tightest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = datetime(2026, 1, 1, 12, tzinfo=UTC)
    ticks = [100.0]
    clock = ServerClock(wall=_Wall(host), monotonic=lambda: ticks[0])
    for bad in ("", "yesterday", "Thu, 99 Foo 2026 99:99:99 GMT", "x" * 5000,
                "Mon, 01 Jan 1990 00:00:00 GMT", "Sat, 01 Jan 2050 00:00:00 GMT"):  # fmt: skip
        clock.observe({"Date": bad})
    clock.observe({})
    assert clock.server_now() is None and clock.now() == host
    with caplog.at_level(logging.WARNING, logger="etl.zendesk.server_clock"):
        for _ in range(3):  # 20 minutes behind; warned once
            clock.observe({"Date": "Thu, 01 Jan 2026 11:40:00 GMT"})
    assert ["20 min ahead of" in r.getMessage() for r in caplog.records] == [True]
    ticks[0] = 130.0
    assert clock.server_now() == datetime(2026, 1, 1, 11, 40, 30, tzinfo=UTC)
    assert clock.skew() == timedelta(minutes=19, seconds=30)
    assert clock.now() == datetime(2026, 1, 1, 11, 40, 30, tzinfo=UTC)
    assert parse_http_date("Thu, 01 Jan 2026 11:40:00 -0000") == datetime(
        2026, 1, 1, 11, 40, tzinfo=UTC
    )


def test_an_http_date_with_an_offset_is_read_as_utc() -> None:
    """A Date with an offset (an obsolete form a proxy may write) is the same instant in
    UTC: aware datetimes compare equal across zones, so the zone itself is asserted (the
    watermark and the request window are written from it)."""
    moment = parse_http_date("Thu, 01 Jan 2026 12:40:00 +0100")
    assert moment == datetime(2026, 1, 1, 11, 40, tzinfo=UTC)
    assert moment is not None and moment.tzinfo is UTC
    assert moment.isoformat() == "2026-01-01T11:40:00+00:00"


def test_migration_0003_runs_again_after_a_kill_between_ddl_and_stamp(db_url: str) -> None:
    """MariaDB commits DDL at once: a kill can leave the column added, the version not."""
    engine = open_engine(db_url)
    try:
        migrate.upgrade(engine, "0002")
        Store(engine).set_watermark("acme", recent(60))
        migrate.upgrade(engine)
        with engine.begin() as conn:  # what the kill leaves: the column, the old version
            conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0002'"))
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert Store(engine).scope("acme") == (True, None)  # adopted by the next sync
    finally:
        engine.dispose()


class _BehindHandler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with a one-record page and a Date 20 minutes behind."""

    def do_GET(self) -> None:
        behind = datetime.now(UTC) - timedelta(minutes=20)
        record = audit_record(1, (behind - timedelta(hours=1)).replace(microsecond=0))
        meta = {"has_more": False, "after_cursor": "c1"}  # kept on a last page, as Zendesk does
        page = {"audit_logs": [record], "meta": meta, "links": {}}
        body = json.dumps(page).encode()
        self.send_response_only(200)
        self.send_header("Date", format_datetime(behind, usegmt=True))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def behind_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BehindHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("workers", [1, 4], ids=["sequential", "parallel"])
def test_check_shows_the_skew_and_sync_never_writes_zendesk_future(
    db_url: str, behind_url: str, workers: int
) -> None:
    account = sim_account(behind_url, lag=LAG, workers=workers)
    said = check_account(account)
    assert "the host clock is 20 min ahead of Zendesk's" in said
    store = fresh_store(db_url)
    assert sync(account, store).status == "success"
    watermark = store.watermark("acme")
    assert watermark is not None
    assert watermark <= datetime.now(UTC) - timedelta(minutes=20) - LAG + timedelta(seconds=5)


def test_status_shows_the_scope_in_force() -> None:
    assert scope_text(None).startswith("not recorded")
    assert scope_text('{"filters":{},"start_time":null}') == "every record (no filters)"
    hosted = '{"filters":{},"host":"acme.zendesk.com","start_time":null}'
    assert scope_text(hosted) == "every record (no filters), read from acme.zendesk.com"
    described = '{"filters":{"action":["create","login"]},"start_time":"2024-01-01T00:00:00Z"}'
    assert scope_text(described) == "action=create,login, from 2024-01-01T00:00:00Z"


@pytest.mark.parametrize("command", ["check", "sync"])
def test_a_mistyped_filter_stops_check_and_sync_with_exit_2(
    tmp_path: Path, sim: SimulatedZendesk, command: str
) -> None:
    database = tmp_path / "audit.db"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\noauth_token_env = "TOKEN"\n'
        f'[sync.filters]\nactor_id = "sixty"\n[database]\nurl = "sqlite:///{database}"\n'
        "auto_migrate = true\n"
    )
    config.chmod(0o600)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "etl", "--config", str(config), command],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**environ, "TOKEN": SIM_OAUTH_TOKEN},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "sync.filters.actor_id: 'sixty' is not an integer" in done.stderr
    assert sim.requests == [] and not database.exists()


def test_resync_under_a_fast_host_clock_reads_by_zendesk_time(
    db_url: str, sim: SimulatedZendesk, history: Any
) -> None:
    store = fresh_store(db_url)
    account = sim_account(sim.url, lag=LAG, workers=1)
    fast = datetime.now(UTC) + timedelta(minutes=20)
    with fake_time_client(account) as client:
        summary = resync_account(account, client, store, since=recent(60 * 7), now=lambda: fast)
    assert summary.status == "success" and summary.inserted == len(history)
    assert summary.window is not None and summary.window.end <= datetime.now(UTC) - LAG
    assert store.watermark("acme") is None
