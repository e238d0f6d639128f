"""The access log as a second stream: turned on, synced, queried; hostile answers; the 403;
one budget for both streams. Against the simulator over real HTTP, on every database."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from access_support import ACCESS_PATH, access_record, access_rows, assert_access_matches
from parts.cli import CLI_ENV, ROOT, cli_command, run_cli
from prometheus_client.parser import text_string_to_metric_families
from support import (
    assert_table_matches,
    fresh_store,
    recent,
    sim_account,
    with_sync,
)

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.streams import StreamStore
from etl.sync.job import sync_each
from etl.sync.run import RunHooks, RunSummary
from etl.sync.streams import ACCESS_LOGS
from etl.zendesk.client import ZendeskClient
from etl.zendesk.ratelimit import RateLimiter
from zendesk_sim import AccessSource, Fault, SimulatedZendesk, generate_records

BOTH = ("audit_logs", "access_logs")


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process (``parts.cli.run_cli``): what it does counts here."""
    return run_cli("--config", str(config), *args)


def installed(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command as a newcomer starts it: a process of its own."""
    return subprocess.run(
        cli_command(config, *args), capture_output=True, text=True, env=CLI_ENV, timeout=300,
        cwd=ROOT,
    )  # fmt: skip


def write_config(tmp_path: Path, base_url: str, db_url: str, sync: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[zendesk]\nbase_url = "{base_url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'retry_budget = "3s"\ntimeout = "5s"\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n[sync]\n{sync}\n'
        f'[monitoring]\nmetrics_file = "{tmp_path / "etl.prom"}"\n'
    )
    path.chmod(0o600)
    return path


def ticket_views(last_month: datetime) -> list[dict[str, object]]:
    """Who opened ticket 7 last month, and a few accesses that are not that."""
    return [
        access_record("01JTICKET7A", last_month, user_id="111", url="/api/v2/tickets/90007.json"),
        access_record(
            "01JTICKET7B", last_month + timedelta(days=3), user_id=222,  # an integer user_id
            url="/api/v2/tickets/90007.json?include=users", ip_address="2001:db8::1f",
        ),
        access_record("01JTICKET8", last_month, user_id="111", url="/api/v2/tickets/90008.json"),
        access_record(
            "01JGRAPHQL", last_month, url=None, authorization_type=None,
            graphql={"operation_name": "TicketQuery", "variables": {"id": "7"}},
        ),
        # older than Zendesk's 90 days: never asked for
        access_record("01JOLD", recent(60 * 24 * 95), url="/api/v2/tickets/90007.json"),
    ]  # fmt: skip


def test_a_newcomer_turns_it_on_syncs_and_asks_who_viewed_a_ticket(
    tmp_path: Path, db_url: str
) -> None:
    end = recent(30)
    last_month = recent(60 * 24 * 30)
    generated = AccessSource(3_000, start=end - timedelta(days=80), end=end, seed=7)
    audit = generate_records(200, start=end - timedelta(days=3), end=end, seed=2)
    with SimulatedZendesk(audit, access_records=generated) as sim:
        sim.add_access_records(ticket_views(last_month))
        config = write_config(tmp_path, sim.url, db_url, 'streams = ["audit_logs", "access_logs"]')
        synced = installed(config, "sync")  # the first run: a process, auto-migrating
        assert synced.returncode == 0, synced.stderr
        assert "stream=access_logs status=success" in synced.stderr
        assert not sim.errors
        kept = [r for r in sim.access_records() if r["id"] != "01JOLD"]
        assert_access_matches(db_url, kept)  # 90 days back, nothing older
        assert_table_matches(db_url, sim.visible_records())  # the audit log as before
        metrics = {
            (sample.name, sample.labels.get("stream", "")): sample.value
            for family in text_string_to_metric_families((tmp_path / "etl.prom").read_text())
            for sample in family.samples
        }
        # The audit log's last run is its own, not the access log's that ran after it.
        assert metrics[("zendesk_audit_etl_last_run_rows_written", "")] == 200
        assert metrics[("zendesk_audit_etl_stream_rows", "access_logs")] == len(kept)
        assert 0 < metrics[("zendesk_audit_etl_stream_lag_seconds", "access_logs")] < 600
        again = cli(config, "sync")  # nothing new: nothing written twice
        assert again.returncode == 0 and "stream=access_logs status=success" in again.stderr
        assert "inserted=0 updated=0" in again.stderr.split("stream=access_logs")[1]
        status = cli(config, "status", "--json")
        assert status.returncode == 0, status.stderr
        (entry,) = json.loads(status.stdout)
        access = entry["streams"]["access_logs"]
        assert access["rows"] == len(kept) and access["last_run_status"] == "success"
        assert 4 * 60 < access["lag_seconds"] < 10 * 60  # now - lag, as the audit log's
        assert cli(config, "status", "--max-lag", "1h").returncode == 0
        assert "account acme, access_logs" in cli(config, "status").stdout

    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            viewers = conn.execute(
                sa.text(
                    "SELECT user_id, ip_address FROM zendesk_access_logs "
                    "WHERE account = :account AND path = :path "
                    "AND timestamp >= :since AND timestamp < :until ORDER BY timestamp"
                ),
                {
                    "account": "acme",
                    "path": "/api/v2/tickets/90007.json",
                    "since": as_stored(last_month - timedelta(days=1), db_url),
                    "until": as_stored(last_month + timedelta(days=10), db_url),
                },
            ).all()
    finally:
        engine.dispose()
    assert [tuple(v) for v in viewers] == [("111", "192.168.1.100"), ("222", "2001:db8::1f")]


def as_stored(moment: datetime, db_url: str) -> datetime:
    """A UTC time as each database compares it: aware for PostgreSQL's timestamptz, naive
    UTC for SQLite's text and MySQL's DATETIME (docs/ACCESS_LOGS.md)."""
    return moment if db_url.startswith("postgresql") else moment.replace(tzinfo=None)


def run_both(
    url: str, db_url: str, retry_budget: float = 2.0, workers: int = 64
) -> tuple[list[RunSummary], ExitCode]:
    account = with_sync(
        sim_account(url, retry_budget=retry_budget, page_size=50), streams=BOTH, workers=workers
    )
    store = fresh_store(db_url)
    summaries: list[RunSummary] = []
    try:
        with ZendeskClient(account.zendesk) as client:
            sync_each(account, client, store, RunHooks(report=summaries.append))
        return summaries, ExitCode.OK
    except Exception as exc:
        return summaries, getattr(exc, "exit_code", ExitCode.INTERNAL)
    finally:
        store.engine.dispose()


@pytest.mark.parametrize("hostile", ["shuffle", "out_of_window"])
def test_a_hostile_page_is_never_checkpointed_past(db_url: str, hostile: str) -> None:
    end = recent(30)
    source = AccessSource(1_000, start=end - timedelta(days=10), end=end, seed=3)
    fault = (
        Fault("shuffle", path=ACCESS_PATH, skip=4, times=-1)
        if hostile == "shuffle"  # a page in descending (or any other) order
        else Fault("mangle", mangle="out_of_window", path=ACCESS_PATH, skip=4, times=-1)
    )
    with SimulatedZendesk(access_records=source) as sim:
        sim.inject(fault)
        summaries, code = run_both(sim.url, db_url)
        assert code == ExitCode.UPSTREAM
        access = summaries[-1]
        assert access.stream == "access_logs" and access.status == "failed"
        said = "out of order" if hostile == "shuffle" else "outside the requested window"
        assert said in (access.error or "")
        rows = access_rows(db_url)
        assert len(rows) == 4 * 50  # the four good pages, committed
        store = fresh_store(db_url)
        watermark = StreamStore(store, "access_logs", ACCESS_LOGS.table).watermark("acme")
        newest = max(r["raw"]["timestamp"] for r in rows)
        assert watermark is not None and watermark.strftime("%Y-%m-%dT%H:%M:%SZ") <= newest
        store.engine.dispose()

        sim.clear_faults()
        summaries, code = run_both(sim.url, db_url)
        assert code == ExitCode.OK
        assert_access_matches(db_url, sim.access_records())


def test_without_the_addon_the_stream_is_skipped_with_a_warning(
    tmp_path: Path, migrated_url: str
) -> None:
    end = recent(30)
    audit = generate_records(150, start=end - timedelta(days=1), end=end, seed=4)
    source = AccessSource(100, start=end - timedelta(days=1), end=end)
    with SimulatedZendesk(audit, access_records=source, access_addon=False) as sim:
        config = write_config(
            tmp_path, sim.url, migrated_url, 'streams = ["audit_logs", "access_logs"]'
        )
        synced = cli(config, "sync")
        assert synced.returncode == 0, synced.stderr
        assert "access_logs skipped" in synced.stderr
        assert "Advanced Data Privacy and Protection" in synced.stderr
        assert "Traceback" not in synced.stderr
        assert_table_matches(migrated_url, sim.visible_records())  # the audit log still synced
        checked = cli(config, "check")
        lines = [line for line in checked.stdout.splitlines() if "access_logs" in line]
        assert len(lines) == 1 and "403" in lines[0] and "add-on" in lines[0], checked.stdout
        stale = cli(config, "status", "--max-lag", "1h")  # the skipped stream is alerted on
        assert stale.returncode == ExitCode.STALE and "acme/access_logs" in stale.stderr
    assert access_rows(migrated_url) == []


def test_both_streams_keep_within_one_budget(sqlite_url: str) -> None:
    window, limit = 2.5, 30  # the simulator's "minute", shortened, and its limit
    end = recent(30)
    audit = generate_records(1_500, start=end - timedelta(hours=20), end=end, seed=8)
    source = AccessSource(1_500, start=end - timedelta(hours=20), end=end, seed=8)
    with SimulatedZendesk(
        audit, access_records=source, rate_limit_per_minute=limit, rate_limit_window=window
    ) as sim:
        account = with_sync(
            sim_account(sim.url, requests_per_minute=limit, page_size=25, workers=1), streams=BOTH
        )
        store = fresh_store(sqlite_url)
        limiter = RateLimiter(limit, window=window)
        with ZendeskClient(account.zendesk, limiter=limiter) as client:
            sync_each(account, client, store, RunHooks())
        store.engine.dispose()
        log = [r for r in sim.requests if r.path.startswith("/api/")]
    audit_requests = [r for r in log if r.path == "/api/v2/audit_logs"]
    access_requests = [r for r in log if r.path == ACCESS_PATH]
    assert len(audit_requests) >= 60 and len(access_requests) >= 60  # both several windows long
    assert limiter.acquired == len(log)  # every request of both streams paid the one budget
    # The simulator counts requests per (shortened) minute as they arrive and answers 429
    # past its limit: both streams together stayed within it.
    assert not [r for r in log if r.status == 429]


@pytest.mark.paced  # about 429s / Retry-After: the headers say Zendesk's 700
def test_transient_faults_are_retried_and_rejects_are_kept_per_stream(db_url: str) -> None:
    end = recent(30)
    source = AccessSource(600, start=end - timedelta(days=5), end=end, seed=9)
    with SimulatedZendesk(access_records=source) as sim:
        sim.inject(
            Fault("status", status=503, path=ACCESS_PATH, skip=1),
            Fault("status", status=429, retry_after=0, path=ACCESS_PATH, skip=1),
            Fault("reset", path=ACCESS_PATH, skip=1),
            Fault("truncate", path=ACCESS_PATH, skip=1),
            Fault("html", status=502, path=ACCESS_PATH),
            Fault("empty_page", path=ACCESS_PATH, skip=1),
            Fault("foreign_next", path=ACCESS_PATH),  # no after_cursor: corrupt, retried
            Fault("mangle", mangle="no_id", path=ACCESS_PATH, skip=1),  # one record without id
        )
        # One reader: in parallel slices, two readers meeting may both read the page where
        # the record came without its id (then stored from the other answer).
        summaries, code = run_both(sim.url, db_url, retry_budget=30.0, workers=1)
        assert code == ExitCode.OK, summaries[-1].error
        records = sim.access_records()
    access = summaries[-1]
    assert access.stream == "access_logs" and access.rejected == 1
    stored = {row["id"] for row in access_rows(db_url)}
    assert len(stored) == len(records) - 1  # all but the one sent without its id...
    store = fresh_store(db_url)
    try:
        status = StreamStore(store, "access_logs", ACCESS_LOGS.table).status("acme")
        (audit,) = store.account_status("acme")
    finally:
        store.engine.dispose()
    assert status.rejects == 1 and audit.rejects == 0  # ...kept as the access log's reject
    assert status.rows == len(stored) and status.last_run is not None
    assert status.last_run.stream == "access_logs" and status.last_run.status == "success"


def test_resync_of_the_access_log_repairs_it_and_leaves_its_watermark(
    tmp_path: Path, migrated_url: str
) -> None:
    end = recent(30)
    source = AccessSource(500, start=end - timedelta(days=2), end=end, seed=12)
    with SimulatedZendesk(access_records=source) as sim:
        config = write_config(tmp_path, sim.url, migrated_url, 'streams = ["access_logs"]')
        assert cli(config, "sync").returncode == 0
        engine = open_engine(migrated_url)
        try:
            with engine.begin() as conn:
                lost = conn.execute(
                    sa.text("DELETE FROM zendesk_access_logs WHERE user_id = '6596848315901'")
                ).rowcount
            store = fresh_store(migrated_url)
            state = StreamStore(store, "access_logs", ACCESS_LOGS.table)
            before = state.watermark("acme")
            since = (end - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
            resynced = cli(config, "resync", "--stream", "access_logs", "--since", since)
            assert resynced.returncode == 0, resynced.stderr
            assert f"{lost:,} were missing and 0 differed" in resynced.stdout
            assert state.watermark("acme") == before
            (run,) = store.recent_runs("acme", limit=1, stream="access_logs")
            assert run.kind == "resync" and run.rows_inserted == lost > 0
            store.engine.dispose()
        finally:
            engine.dispose()
        assert_access_matches(migrated_url, sim.access_records())


def test_a_value_that_only_changes_type_is_a_new_version(tmp_path: Path, migrated_url: str) -> None:
    """``1`` becoming ``true`` (or ``1.0``) is a change at Zendesk: stored as a new version,
    as the audit log's upsert does, though Python's ``1 == True == 1.0`` would call it the
    same record."""
    end = recent(30)
    first = access_record("01HTYPE0000000000000000001", end - timedelta(hours=1), flag=1)
    with SimulatedZendesk(access_records=[first]) as sim:
        config = write_config(tmp_path, sim.url, migrated_url, 'streams = ["access_logs"]')
        assert cli(config, "sync").returncode == 0
        since = (end - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for value in (True, 1.0):
            sim.add_access_records([{**first, "flag": value}])
            resynced = cli(config, "resync", "--stream", "access_logs", "--since", since)
            assert resynced.returncode == 0, resynced.stderr
            assert "0 were missing and 1 differed" in resynced.stdout, resynced.stdout
            (row,) = access_rows(migrated_url)
            raw = row["raw"] if isinstance(row["raw"], dict) else json.loads(row["raw"])
            assert raw["flag"] is value or (value == 1.0 and isinstance(raw["flag"], float))
