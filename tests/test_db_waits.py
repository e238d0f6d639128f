"""Database waits are bounded: a row lock held by another session ends the run with exit 6
and one line naming what waited; a SIGTERM during the wait stops it with exit 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import run_cli_in
from parts.databases import migrate_from_template
from sqlalchemy.engine import Connection, Engine, make_url
from support import SIM_OAUTH_TOKEN, audit_record, recent

from etl.storage.engine import for_writing, open_engine
from zendesk_sim import SimulatedZendesk

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 90.0
# Short timeouts for the test, given in the URL as a user would.
SHORT = {
    "postgresql": "options=-c%20lock_timeout%3D2s",
    "mysql": "init_command=SET%20SESSION%20innodb_lock_wait_timeout%3D2",
    "sqlite": "timeout=2",
}
LONG_POSTGRES = "options=-c%20lock_timeout%3D300s"
LONG_MYSQL = "init_command=SET%20SESSION%20innodb_lock_wait_timeout%3D300"


def with_query(db_url: str, query: str) -> str:
    return f"{db_url}{'&' if '?' in db_url else '?'}{query}"


@contextmanager
def state_row_locked(db_url: str) -> Iterator[Engine]:
    """Another session holds the sync state table's row (SQLite: the write lock)."""
    engine = open_engine(db_url)
    conn = for_writing(engine).connect()  # SQLite: BEGIN IMMEDIATE
    try:
        with conn.begin():
            if engine.dialect.name != "sqlite":
                rows = conn.execute(sa.text("SELECT * FROM zendesk_audit_sync_state FOR UPDATE"))
                assert len(rows.all()) == 1
            yield engine
            conn.rollback()
    finally:
        conn.close()
        engine.dispose()


@pytest.fixture
def job(db_url: str, tmp_path: Path) -> Iterator[Callable[[str], list[str]]]:
    """A first sync done (so the state row exists), new records upstream; ``job(url)`` is
    the command of the next sync against database ``url``."""
    records = [audit_record(1000 + i, recent(90 - i / 10)) for i in range(50)]
    with SimulatedZendesk(records) as sim:

        def command(url: str) -> list[str]:
            config = tmp_path / "config.toml"
            config.write_text(
                f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\n'
                f'[database]\nurl = "{url}"\nauto_migrate = true\n'
            )
            return [sys.executable, "-m", "etl", "--config", str(config), "--quiet", "sync"]

        # The first sync only sets the scene (the state row): in process, on a copy of the
        # migrated template; the runs the tests wait on are real processes.
        assert migrate_from_template(db_url)
        first = run_cli_in(command(db_url)[3:], ENV)
        assert first.returncode == 0, first.stderr
        sim.add_records([audit_record(5000 + i, recent(10)) for i in range(20)])
        yield command


ENV = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}


def test_a_held_row_lock_ends_the_run_with_one_line(
    db_url: str, job: Callable[[str], list[str]]
) -> None:
    kind = make_url(db_url).get_backend_name()
    url = with_query(db_url, SHORT["mysql" if kind in ("mysql", "mariadb") else kind])
    with state_row_locked(db_url):
        started = time.monotonic()
        ran = subprocess.run(
            job(url), env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_S
        )
        took = time.monotonic() - started
    assert ran.returncode == 6, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1, ran.stderr
    assert "account acme:" in lines[0] and "waited over" in lines[0], lines[0]
    # SQLite's one write lock is met first where the run takes its write epoch
    waited = ("writing a page", "starting a run", "taking the write epoch")
    assert any(doing in lines[0] for doing in waited), lines[0]
    assert took < DEADLINE_S


def lock_waiters(conn: Connection, kind: str) -> int:
    if kind == "postgresql":
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    else:
        # (INNODB_TRX does not always list the waiting transaction on MariaDB.)
        query = (
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
            "AND INFO LIKE 'INSERT INTO zendesk_audit_sync_state%' AND TIME >= 1"
        )
    return int(conn.execute(sa.text(query)).scalar_one())


# SQLite's busy wait cannot be cancelled; its busy timeout bounds it.
@pytest.mark.databases("postgresql", "mysql")
@pytest.mark.parametrize("signals", [1, 2, 3])
def test_sigterm_during_a_lock_wait_exits_130_with_one_line(
    db_url: str, job: Callable[[str], list[str]], signals: int
) -> None:
    kind = make_url(db_url).get_backend_name()
    url = with_query(db_url, LONG_POSTGRES if kind == "postgresql" else LONG_MYSQL)
    with (
        state_row_locked(db_url) as engine,
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watch,
    ):
        proc = subprocess.Popen(job(url), env=ENV, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + DEADLINE_S
            while lock_waiters(watch, "postgresql" if kind == "postgresql" else "mysql") < 1:
                assert time.monotonic() < deadline, "the run never waited on the lock"
                assert proc.poll() is None, proc.communicate()[1]
                time.sleep(0.05)
            for _ in range(signals):
                proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=DEADLINE_S)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "stopped by" in errors[0], stderr
