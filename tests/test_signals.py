"""SIGTERM and SIGINT on the real CLI: exit 130, one error line, never a traceback, however
many signals arrive and whatever the run waits on; the next run completes exactly.

Each signal is sent once the run is seen at the point under test (rows committed, a line
on stderr, a request answered, a query waiting on a lock), never after a fixed delay.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import CliProcess, run_cli
from parts.configs import write_config as parts_config
from parts.databases import make_database, selected_kinds
from support import (
    assert_table_matches,
    audit_record,
    count_rows,
    fresh_store,
    recent,
    wait_until,
)

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.locking.lock import run_lock
from zendesk_sim import Fault, SimulatedZendesk, generate_records

STOPPED = 30.0  # seconds: "acted on", generous for a busy machine; speed is for `make bench`


class Run(CliProcess):
    """``sync`` in a subprocess, its stderr read line by line as it comes."""

    def __init__(self, config: Path, *args: str) -> None:
        super().__init__(config, "sync", *args)

    def assert_interrupted(self) -> str:
        """Exit 130 with exactly one error line and no traceback; the line."""
        assert self.proc.returncode == ExitCode.INTERRUPTED, self.stderr
        assert "Traceback" not in self.stderr
        errors = [line for line in self.lines if line.startswith("zendesk-audit-etl")]
        assert len(errors) == 1, self.stderr
        return errors[0]


def write_config(
    tmp_path: Path, url: str, db_url: str, extra: str = "", requests_per_minute: int = 5000
) -> Path:
    return parts_config(
        tmp_path,
        db_url,
        url,
        zendesk={"requests_per_minute": requests_per_minute},
        zendesk_text=extra,
        database={"auto_migrate": True},
    )


def count_rows_of(db_url: str) -> int:
    engine = open_engine(db_url)
    try:
        return count_rows(engine)
    finally:
        engine.dispose()


def completes_exactly(config: Path, db_url: str, sim: SimulatedZendesk) -> None:
    """The next run (in process: what is tested is what the interrupted one left) stores
    every record exactly; the simulator answers at once now, the pace having mattered
    only for where the signal landed."""
    sim.latency = 0.0
    final = run_cli("--config", str(config), "--quiet", "sync")
    assert final.returncode == 0, final.stderr
    assert_table_matches(db_url, sim.visible_records())


# The backfill interrupted mid-way: BACKFILL_RECORDS read at no more than PACED pages a
# second (the job keeps to its requests_per_minute), so the signals, sent once 1,000 rows
# are committed, land with seconds of backfill to go however fast the machine; the run
# that completes it goes at full speed. (20,000 unpaced records took 21 s a test.)
BACKFILL_RECORDS = 4_000
PACED = 600  # requests a minute: 10 pages of 100 a second


@pytest.fixture
def backfill_sim() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    records = generate_records(BACKFILL_RECORDS, start=end - timedelta(days=4), end=end, seed=31)
    with SimulatedZendesk(records, latency=0.03) as sim:
        yield sim


@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGTERM),
    ],
    ids=["term-term", "int-int", "four"],
)
def test_signals_in_quick_succession_mid_backfill(
    migrated_url: str, tmp_path: Path, backfill_sim: SimulatedZendesk, signals: tuple[int, ...]
) -> None:
    config = write_config(tmp_path, backfill_sim.url, migrated_url, requests_per_minute=PACED)
    engine = open_engine(migrated_url)
    run = Run(config)
    wait_until(lambda: count_rows(engine) >= 1000, "the backfill's first pages committed")
    engine.dispose()
    sent = time.monotonic()
    for signum in signals:
        run.proc.send_signal(signum)
    run.finish()
    assert time.monotonic() - sent < STOPPED
    run.assert_interrupted()
    assert count_rows_of(migrated_url) < BACKFILL_RECORDS, "the signals came after the backfill"
    completes_exactly(
        write_config(tmp_path, backfill_sim.url, migrated_url), migrated_url, backfill_sim
    )


def test_a_second_signal_once_the_first_is_acted_on(
    migrated_url: str, tmp_path: Path, backfill_sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, backfill_sim.url, migrated_url, requests_per_minute=PACED)
    engine = open_engine(migrated_url)
    run = Run(config)
    wait_until(lambda: count_rows(engine) >= 1000, "the backfill's first pages committed")
    engine.dispose()
    run.proc.send_signal(signal.SIGTERM)
    run.wait_for_line("SIGTERM received")
    if run.proc.poll() is None:  # SIGINT: a second SIGTERM this soon is taken as timeout's echo
        run.proc.send_signal(signal.SIGINT)
    run.finish()
    run.assert_interrupted()
    assert count_rows_of(migrated_url) < BACKFILL_RECORDS, "the signals came after the backfill"
    completes_exactly(
        write_config(tmp_path, backfill_sim.url, migrated_url), migrated_url, backfill_sim
    )


@pytest.mark.paced  # about 429s / Retry-After: the headers say Zendesk's 700
def test_sigterm_during_a_rate_limit_pause_stops_at_once(sqlite_url: str, tmp_path: Path) -> None:
    end = recent(30)
    records = generate_records(1500, start=end - timedelta(days=1), end=end, seed=3)
    with SimulatedZendesk(records) as sim:
        sim.inject(Fault("status", status=429, retry_after=3600, skip=3))
        config = write_config(tmp_path, sim.url, sqlite_url, 'retry_budget = "2h"\n')
        run = Run(config)
        wait_until(
            lambda: any(r.status == 429 for r in sim.requests), "the 429 answered to the run"
        )
        # The run's own word that it waits now (the 429 sent is not yet the 429 acted on).
        run.wait_for_line("retry 1 in 3600.0 s")
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        run.finish()
        assert time.monotonic() - sent < STOPPED  # not an hour
        # The pause ends at once either way; which thread reports the signal first is a
        # race: the fetcher in its pause, or the backfill's loop with the pages it committed.
        line = run.assert_interrupted()
        assert re.search(
            r"stopped by a signal (while waiting for the rate limit or a retry"
            r"|after committing \d+ pages)",
            line,
        ), line
        completes_exactly(config, sqlite_url, sim)


def test_sigterm_while_waiting_for_the_lock_stops_at_once(db_url: str, tmp_path: Path) -> None:
    end = recent(30)
    with SimulatedZendesk(generate_records(300, start=end - timedelta(days=1), end=end)) as sim:
        config = write_config(tmp_path, sim.url, db_url)
        store = fresh_store(db_url)
        with run_lock(store.engine, "acme"):
            run = Run(config, "--wait", "3600")
            run.wait_for_line("another run holds the lock")
            sent = time.monotonic()
            run.proc.send_signal(signal.SIGTERM)
            run.finish()
            assert time.monotonic() - sent < STOPPED  # not an hour
        store.engine.dispose()
        line = run.assert_interrupted()
        assert "signal" in line
        completes_exactly(config, db_url, sim)


POSTGRES = [k for k in ("postgresql",) if k in selected_kinds()]


@pytest.fixture(params=POSTGRES)
def pg_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from make_database(str(request.param), tmp_path)


def test_two_sigterms_while_a_row_lock_blocks_the_run(pg_url: str, tmp_path: Path) -> None:
    """Another session holds the state row FOR UPDATE: the run waits in the database.
    A second SIGTERM must not surface inside the driver as a database error (exit 6,
    tracebacks): it leaves at once, exit 130, one line."""
    end = recent(30)
    with SimulatedZendesk(generate_records(300, start=end - timedelta(days=1), end=end)) as sim:
        config = write_config(tmp_path, sim.url, pg_url)
        completes_exactly(config, pg_url, sim)  # the state row exists
        sim.add_records([audit_record(9_100_000_000_000 + i, recent(10)) for i in range(50)])
        engine = open_engine(pg_url)
        try:
            with engine.connect() as blocker:
                blocker.execute(sa.text("SELECT * FROM zendesk_audit_sync_state FOR UPDATE"))
                run = Run(config)
                wait_until(lambda: _waits_on_a_lock(engine), "the run waiting on the row lock")
                run.proc.send_signal(signal.SIGTERM)
                run.wait_for_line("SIGTERM received")
                run.proc.send_signal(signal.SIGTERM)
                run.finish()
                blocker.rollback()
        finally:
            engine.dispose()
        run.assert_interrupted()
        completes_exactly(config, pg_url, sim)


def _waits_on_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        waiting = conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    return bool(waiting)
