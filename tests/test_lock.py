"""Run locks on each kind of database: contention, waiting, and a killed holder."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from parts.clock import FakeClock
from sqlalchemy import event
from sqlalchemy.engine import Engine

from etl.common.errors import LockedError
from etl.storage import migrate
from etl.storage.engine import open_engine, sqlite_path
from etl.storage.locking.lock import (
    POLL_INTERVAL_S,
    advisory_key,
    lock_file,
    mysql_lock_name,
    run_lock,
)
from etl.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent


def test_a_second_run_is_refused_at_once(engine: Engine) -> None:
    with run_lock(engine, "acme"):
        with pytest.raises(LockedError) as caught, run_lock(engine, "acme"):
            pass  # pragma: no cover
        with run_lock(engine, "other"):  # accounts do not block each other
            pass
    message = str(caught.value)
    assert "acme" in message and "--wait" in message
    with run_lock(engine, "acme"):  # released on exit
        pass


def test_the_lock_is_released_when_the_run_fails(engine: Engine) -> None:
    with pytest.raises(RuntimeError), run_lock(engine, "acme"):
        raise RuntimeError("boom")
    with run_lock(engine, "acme"):
        pass


def test_waiting_polls_until_the_deadline(engine: Engine) -> None:
    fake = FakeClock()
    with (
        run_lock(engine, "acme"),
        pytest.raises(LockedError),
        run_lock(engine, "acme", wait=1.2, sleep=fake.sleep, clock=fake.clock),
    ):
        pass  # pragma: no cover
    assert fake.sleeps == pytest.approx([POLL_INTERVAL_S, POLL_INTERVAL_S, 0.2])


def test_waiting_gets_the_lock_once_it_is_released(engine: Engine) -> None:
    fake = FakeClock()
    holder = ExitStack()
    holder.enter_context(run_lock(engine, "acme"))
    fake.at(fake.now + 2 * POLL_INTERVAL_S, holder.close)  # the holder finishes after 2 polls
    with run_lock(engine, "acme", wait=60, sleep=fake.sleep, clock=fake.clock):
        pass
    assert fake.sleeps == [POLL_INTERVAL_S, POLL_INTERVAL_S]


def test_store_lock_delegates(engine: Engine) -> None:
    migrate.upgrade(engine)  # the lock's write epoch is kept in the database
    store = Store(engine)
    with store.lock("acme"), pytest.raises(LockedError), store.lock("acme", wait=0):
        pass  # pragma: no cover


HOLDER = textwrap.dedent(
    """
    import sys, time
    from etl.storage.engine import open_engine
    from etl.storage.locking.lock import run_lock
    engine = open_engine(sys.argv[1])
    with run_lock(engine, "acme"):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_a_killed_holder_never_blocks_the_next_run(engine: Engine, db_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError), run_lock(engine, "acme"):
            pass  # pragma: no cover
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    # The server drops a dead client's session (and its locks) within moments.
    with run_lock(engine, "acme", wait=10):
        pass


def test_the_sqlite_lock_file_is_private_and_beside_the_database(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    database = sqlite_path(engine.url)
    assert database is not None
    path = lock_file(database, "acme")
    assert path == database.with_name(database.name + ".acme.lock")
    old_umask = os.umask(0o022)
    try:
        with run_lock(engine, "acme"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        os.umask(old_umask)
    assert not path.exists()  # deleted as it is let go: lock files do not pile up
    engine.dispose()


def test_odd_account_names_make_safe_file_names(tmp_path: Path) -> None:
    database = tmp_path / "audit.db"
    for account in ("../../etc/passwd", "a b", "", ".hidden", "x" * 200):
        path = lock_file(database, account)
        assert path.parent == tmp_path
        assert path.name.startswith("audit.db.") and path.name.endswith(".lock")
    assert lock_file(database, "a/b") != lock_file(database, "a_b")


def test_in_memory_sqlite_needs_no_lock() -> None:
    engine = open_engine("sqlite://")
    with run_lock(engine, "acme"), run_lock(engine, "acme"):
        pass
    engine.dispose()


def test_lock_names() -> None:
    assert advisory_key("acme") == advisory_key("acme")
    assert advisory_key("acme") != advisory_key("acme2")
    assert -(2**63) <= advisory_key("acme") < 2**63
    assert mysql_lock_name("db", "acme") == "zendesk-audit-etl:db:acme"
    long = mysql_lock_name("db", "ü" * 100)
    assert len(long.encode()) <= 64
    assert long != mysql_lock_name("db", "ü" * 101)
    assert mysql_lock_name("db1", "acme") != mysql_lock_name("db2", "acme")


@pytest.mark.databases("postgresql")
def test_a_server_without_idle_session_timeout_still_locks_once(db_url: str) -> None:
    """Before PostgreSQL 14 the setting is unknown: the lock is taken by the plain
    statement, and taken once (the failed one took nothing), so one release frees it."""
    engine = open_engine(db_url)
    other = open_engine(db_url)

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def older_server(conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> Any:
        return statement.replace("'idle_session_timeout'", "'no_such_setting_before_14'"), params

    try:
        with run_lock(engine, "acme") as held:
            held.check()
            with pytest.raises(LockedError), run_lock(other, "acme"):
                pass  # pragma: no cover
        with run_lock(other, "acme"):  # one release let it go
            pass
    finally:
        other.dispose()
        engine.dispose()
