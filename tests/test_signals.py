"""SIGTERM and SIGINT on the real CLI: exit 130, one error line, never a traceback, however
many signals arrive and whatever the run waits on; the next run completes exactly.

Each signal is sent once the run is seen at the point under test (rows committed, a line
on stderr, a request answered, a query waiting on a lock), never after a fixed delay.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import make_database, selected_kinds
from support import (
    SIM_OAUTH_TOKEN,
    assert_table_matches,
    audit_record,
    count_rows,
    fresh_store,
    recent,
    wait_until,
)

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.lock import run_lock
from zendesk_sim import Fault, SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONFIG"))},
    "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN,
}
STOPPED = 30.0  # seconds: "acted on", generous for a busy machine; speed is for `make bench`


class Run:
    """``sync`` in a subprocess, its stderr read line by line as it comes."""

    def __init__(self, config: Path, *args: str) -> None:
        command = [sys.executable, "-m", "etl", "--config", str(config), "sync", *args]
        self.proc = subprocess.Popen(command, env=ENV, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, text: str) -> None:
        wait_until(
            lambda: any(text in line for line in self.lines) or self.proc.poll() is not None,
            f"{text!r} on stderr",
        )
        assert any(text in line for line in self.lines), self.stderr

    def finish(self, timeout: float = 60) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def assert_interrupted(self) -> str:
        """Exit 130 with exactly one error line and no traceback; the line."""
        assert self.proc.returncode == ExitCode.INTERRUPTED, self.stderr
        assert "Traceback" not in self.stderr
        errors = [line for line in self.lines if line.startswith("zendesk-audit-etl")]
        assert len(errors) == 1, self.stderr
        return errors[0]


def write_config(tmp_path: Path, url: str, db_url: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[zendesk]\nbase_url = "{url}"\nname = "acme"\nrequests_per_minute = 5000\n{extra}'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
    )
    path.chmod(0o600)
    return path


def completes_exactly(config: Path, db_url: str, sim: SimulatedZendesk) -> None:
    final = subprocess.run(
        [sys.executable, "-m", "etl", "--config", str(config), "--quiet", "sync"],
        env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert final.returncode == 0, final.stderr
    assert_table_matches(db_url, sim.visible_records())


@pytest.fixture
def backfill_sim() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    records = generate_records(20_000, start=end - timedelta(days=20), end=end, seed=31)
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
    db_url: str, tmp_path: Path, backfill_sim: SimulatedZendesk, signals: tuple[int, ...]
) -> None:
    config = write_config(tmp_path, backfill_sim.url, db_url)
    engine = open_engine(db_url)
    run = Run(config)
    wait_until(lambda: count_rows(engine) >= 1000, "the backfill's first pages committed")
    engine.dispose()
    sent = time.monotonic()
    for signum in signals:
        run.proc.send_signal(signum)
    run.finish()
    assert time.monotonic() - sent < STOPPED
    run.assert_interrupted()
    completes_exactly(config, db_url, backfill_sim)


def test_a_second_signal_once_the_first_is_acted_on(
    db_url: str, tmp_path: Path, backfill_sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, backfill_sim.url, db_url)
    engine = open_engine(db_url)
    run = Run(config)
    wait_until(lambda: count_rows(engine) >= 1000, "the backfill's first pages committed")
    engine.dispose()
    run.proc.send_signal(signal.SIGTERM)
    run.wait_for_line("SIGTERM received")
    if run.proc.poll() is None:  # SIGINT: a second SIGTERM this soon is taken as timeout's echo
        run.proc.send_signal(signal.SIGINT)
    run.finish()
    run.assert_interrupted()
    completes_exactly(config, db_url, backfill_sim)


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
        sent = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        run.finish()
        assert time.monotonic() - sent < STOPPED  # not an hour
        assert "while waiting for the rate limit or a retry" in run.assert_interrupted()
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
