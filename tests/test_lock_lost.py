"""A run lock lost mid-run (its session killed, its file deleted) stops the run before its
next commit, with one line and exit 6; a symlink to a SQLite database takes the same lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import run_cli
from parts.locks import lose_lock
from sqlalchemy.engine import Engine, make_url
from support import (
    SIM_OAUTH_TOKEN,
    assert_table_matches,
    audit_record,
    fresh_store,
    recent,
)

from etl.common.errors import LockedError, LockLostError
from etl.records.audit import parse_record
from etl.storage.engine import open_engine
from etl.storage.locking.lock import lock_file, run_lock
from etl.storage.store import Store
from zendesk_sim import SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 60.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = fresh_store(db_url)
    yield store
    store.engine.dispose()


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM zendesk_audit_logs")).scalar_one())


def test_a_lost_lock_refuses_the_next_commit(store: Store) -> None:
    run_id = store.start_run("acme", recent(60), recent(1), None)
    with store.lock("acme") as held:
        store.write_page("acme", run_id, [], [], None)  # held: commits
        lose_lock(store.engine)
        row = parse_record(audit_record(1, recent(5)), "acme", recent(0))
        assert isinstance(row, dict)
        with pytest.raises(LockLostError) as caught:
            store.write_page("acme", run_id, [row], [], recent(5))
        with pytest.raises(LockLostError):
            held.check()  # and stays lost
        # Another run can take the lock meanwhile; this one never writes again.
        with run_lock(store.engine, "acme"), pytest.raises(LockLostError):
            store.set_watermark("acme", recent(1))
        store.finish_run(run_id, "failed", watermark_after=None, requests=0, rate_limited=0)
    message = str(caught.value)
    assert "lost the run lock of account acme" in message and "\n" not in message
    assert count_rows(store.engine) == 0
    assert store.watermark("acme") is None
    with store.lock("acme"):  # a new lock is checked afresh
        store.set_watermark("acme", recent(1))


@pytest.mark.databases("postgresql", "mysql")  # a file lock has no session to time out
def test_the_lock_session_outlives_the_servers_idle_timeout(db_url: str) -> None:
    """Sessions of this engine are ended after 1 s idle (MariaDB wait_timeout, PostgreSQL
    idle_session_timeout); the lock's own session is not."""
    kind = make_url(db_url).get_backend_name()
    if kind == "postgresql":
        url = f"{db_url}?options=-c%20idle_session_timeout%3D1000"
    else:
        url = f"{db_url}?init_command=SET%20SESSION%20wait_timeout%3D1"
    engine = open_engine(url)
    try:
        with run_lock(engine, "acme") as held:
            # The idle time is the subject here: nothing else to wait for.
            time.sleep(3)
            held.check()
    finally:
        engine.dispose()


def test_a_symlink_to_the_sqlite_database_takes_the_same_lock(tmp_path: Path) -> None:
    real = tmp_path / "data" / "audit.db"
    real.parent.mkdir()
    link = tmp_path / "link.db"
    fresh_store(f"sqlite:///{real}").engine.dispose()
    link.symlink_to(real)
    first, second = open_engine(f"sqlite:///{real}"), open_engine(f"sqlite:///{link}")
    try:
        with run_lock(first, "acme"), pytest.raises(LockedError), run_lock(second, "acme"):
            pass  # pragma: no cover
        with run_lock(second, "acme"), pytest.raises(LockedError), run_lock(first, "acme"):
            pass  # pragma: no cover
    finally:
        first.dispose()
        second.dispose()
    assert lock_file(link, "acme") == lock_file(real, "acme")
    assert not (tmp_path / "link.db.acme.lock").exists()


def test_a_run_whose_lock_is_killed_stops_and_the_next_run_is_exact(
    db_url: str, tmp_path: Path
) -> None:
    """Kill the lock mid-backfill, start a second run at once: the first stops with exit 6
    and one line before its next commit, the second finishes, nothing is duplicated."""
    end = recent(30)
    # 80 pages: after its first commit the first run has 79 to go (1.9 s at least at 2,500 a
    # minute), long past the lock's loss even on a busy host. 12,000 records were more of the
    # same pages for the second run to read, paced.
    records = generate_records(8_000, start=end - timedelta(days=2), end=end, seed=5)
    engine = open_engine(db_url)
    with SimulatedZendesk(records, latency=0.02, rate_limit_per_minute=1_000_000) as sim:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
            f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
        )
        command = [sys.executable, "-m", "etl", "--config", str(config), "--quiet", "sync"]
        env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        first = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: _has_rows(engine), "the first run's first commit")
            lose_lock(engine)
            # The second and last runs in process: what they do is the subject, not how they
            # start; the first, whose exit is, stays a process.
            second = run_cli(*command[command.index("--config") :])
            _, first_err = first.communicate(timeout=DEADLINE_S)
        finally:
            first.kill()
            first.wait()
        assert first.returncode == 6, first_err
        lines = first_err.strip().splitlines()
        assert len(lines) == 1 and "lost the run lock of account acme" in lines[0], first_err
        assert "Traceback" not in first_err
        assert second.returncode == 0, second.stderr
        sim.add_records([audit_record(9_000_000_000_000 + i, recent(6)) for i in range(20)])
        final = run_cli(*command[command.index("--config") :])
        assert final.returncode == 0, final.stderr
        assert_table_matches(db_url, sim.visible_records())
    engine.dispose()


def _has_rows(engine: Engine) -> bool:
    try:
        return count_rows(engine) > 0
    except sa.exc.DBAPIError:  # the tables are not there yet (auto_migrate)
        return False
