"""The server databases the tests keep for the next test (``parts/db_pool.py``,
``parts/mysql_pool.py``): a kept one must be a clean slate, and one whose shape a test
changed must be dropped; what a killed test process left is dropped at the next run's
start, and nothing of a live one (``parts/kept.py``: ``own``, ``sweep``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Generator
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.databases import (
    _admin,
    _pool,
    kind_of,
    make_database,
    migrate_from_template,
    server_database,
)
from parts.kept import sweep
from sqlalchemy.engine import make_url
from support import fresh_store

TESTS = Path(__file__).parent
# A test process as a worker is one: its databases made (a template, a test's own, a kept
# one), then killed where it stands, before anything at exit could drop them.
WORKER = """
import json, sys, time
from parts.databases import migrate_from_template, server_database
from parts.kept import owner
made = server_database(sys.argv[1])
url = next(made)
assert migrate_from_template(url)
made.close()  # kept for the next test
print(json.dumps([url, owner()]), flush=True)
time.sleep(600)
"""
# The next run's start, in a process of its own as xdist's controller is.
NEXT_RUN = """
import json
import os
from parts.databases import sweep_leftovers
print(json.dumps(sweep_leftovers()))
"""

VERSION = "zendesk_audit_alembic_version"
ADD_RUN = (
    "INSERT INTO zendesk_audit_sync_runs (account, started_at, status) "
    "VALUES ('acme', CURRENT_TIMESTAMP, 'success')"
)
LAST_RUN = "SELECT MAX(id) FROM zendesk_audit_sync_runs"


def _migrated(kind: str) -> tuple[Generator[str, None, None], str, sa.Engine]:
    """A test's database as the fixture makes it (its generator: ``close`` ends the
    test), migrated from the template, and an engine on it."""
    made = server_database(kind)
    url = next(made)
    assert migrate_from_template(url)
    return made, url, sa.create_engine(url, poolclass=sa.pool.NullPool)


def _exists(kind: str, name: str) -> bool:
    ask = {
        "postgresql": "SELECT 1 FROM pg_database WHERE datname = :n",
        "mysql": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :n",
    }[kind]
    with _admin(kind).connect() as conn:
        return conn.execute(sa.text(ask), {"n": name}).first() is not None


@pytest.mark.databases("postgresql", "mysql")
def test_a_kept_database_comes_back_with_no_rows_and_counters_restarted(db_url: str) -> None:
    kind = kind_of(db_url)
    first, url, engine = _migrated(kind)
    with engine.begin() as conn:
        version = conn.execute(sa.text(f"SELECT * FROM {VERSION}")).all()
        conn.execute(sa.text(f"INSERT INTO {VERSION} VALUES ('left_by_a_test')"))
        conn.execute(sa.text(ADD_RUN))
        conn.execute(sa.text(ADD_RUN))
        assert conn.execute(sa.text(LAST_RUN)).scalar_one() == 2
    engine.dispose()
    first.close()  # the test is over: kept, not dropped
    pool = _pool(kind)
    assert pool is not None and make_url(url).database in pool.migrated

    second, _, engine = _migrated(kind)  # the kept one, moved into place
    with engine.begin() as conn:
        assert conn.execute(sa.text(f"SELECT * FROM {VERSION}")).all() == version
        assert conn.execute(sa.text(LAST_RUN)).scalar() is None
        conn.execute(sa.text(ADD_RUN))
        assert conn.execute(sa.text(LAST_RUN)).scalar_one() == 1
    engine.dispose()
    second.close()


@pytest.mark.databases("postgresql", "mysql")
def test_a_database_whose_shape_a_test_changed_is_dropped(db_url: str) -> None:
    kind = kind_of(db_url)
    made, url, engine = _migrated(kind)
    with engine.begin() as conn:
        # An index only: nothing else would stop its rows being cleared and put back.
        conn.execute(sa.text("CREATE INDEX left_by_a_test ON zendesk_audit_sync_runs (status)"))
    engine.dispose()
    made.close()
    name = str(make_url(url).database)
    pool = _pool(kind)
    assert pool is not None and name not in pool.migrated + pool.empty
    assert not _exists(kind, name)


def _names(kind: str) -> set[str]:
    listing = {
        "postgresql": "SELECT datname FROM pg_database",
        "mysql": "SELECT schema_name FROM information_schema.schemata",
    }[kind]
    with _admin(kind).connect() as conn:
        return set(conn.execute(sa.text(listing)).scalars().all())


@pytest.mark.databases("postgresql", "mysql")
def test_what_a_killed_test_process_left_is_dropped_at_the_next_start(db_url: str) -> None:
    kind = kind_of(db_url)
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, kind], cwd=TESTS, stdout=subprocess.PIPE, text=True
    )
    try:
        line = worker.stdout.readline() if worker.stdout else ""
    finally:
        worker.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=60) == -signal.SIGKILL
    url, token = json.loads(line)
    assert make_url(url).database in _names(kind)
    left = {n for n in _names(kind) if n.startswith((f"etl_test_{token}_", f"etl_tmpl_{token}_"))}
    # its template, its kept database (and on PostgreSQL the spare it learnt the empty shape on)
    assert {n[:9] for n in left} == {"etl_test_", "etl_tmpl_"}

    mine = make_url(db_url).database  # this live process's own (its lock held): kept
    other_form = f"etl_test_{uuid.uuid4().hex[:12]}"  # a name no owner is read from
    with _admin(kind).connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {other_form}"))
    try:
        swept = subprocess.run(
            [sys.executable, "-c", NEXT_RUN],
            cwd=TESTS,
            env={**os.environ, "ETL_TEST_DATABASES": kind},
            capture_output=True,
            text=True,
            check=True,
        )
        assert left <= set(json.loads(swept.stdout))
        assert not left & _names(kind)
        assert {mine, other_form} <= _names(kind)
    finally:
        with _admin(kind).connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE {other_form}"))


@pytest.mark.databases("postgresql", "mysql")
def test_a_live_process_databases_are_not_swept(db_url: str) -> None:
    """Another process's token whose lock is held (here by a connection of this test)."""
    kind, token = kind_of(db_url), uuid.uuid4().hex[:8]
    name = f"etl_test_{token}_{uuid.uuid4().hex[:8]}"
    holder = sa.create_engine(_admin(kind).url, poolclass=sa.pool.NullPool)
    with holder.connect() as lock, _admin(kind).connect() as conn:
        if kind == "postgresql":
            lock.execute(
                sa.text(f"SELECT pg_advisory_lock({0x45544C54}, {int(token, 16) % 2**31})")
            )
        else:
            lock.execute(sa.text(f"SELECT GET_LOCK('etl_test_owner_{token}', 0)"))
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
        try:
            assert name not in sweep(kind, _admin(kind))
            assert name in _names(kind)
        finally:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    holder.dispose()


def test_a_stores_engine_is_disposed_when_its_test_is_over(db_url: str, tmp_path: Path) -> None:
    """``fresh_store``'s engine is the test's to leave: its sessions end with the test, so
    the kept database is not waited on, nor its sessions ended by the server."""
    made = make_database(kind_of(db_url), tmp_path)
    url = next(made)
    store = fresh_store(url)
    closed: list[object] = []
    sa.event.listen(store.engine, "close", lambda conn, record: closed.append(conn))
    with store.engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    assert closed == []  # kept in its pool for the test's next statement
    made.close()  # the test is over
    assert len(closed) == 1
