"""What a scheduled run with nothing new costs once started (issue 27: one request, well
under a second): one request at the simulator, a few short transactions, no look at the
schema beyond its version. What it imports is in test_cli (a real process)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import pkgutil
import re
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import run_cli
from parts.configs import write_config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from support import audit_record, recent

import etl
from etl.storage.engine import open_engine, parse_url
from etl.storage.locking import sessions
from zendesk_sim import SimulatedZendesk

# The statements of a sync with nothing new today (SQLite's BEGINs included): the version
# read, the write epoch (returned by its upsert but on MySQL), the scope and watermark (one
# read), the plan read, the run's row, the watermark (read back as it is saved) and the
# ledger checkpoint. The empty page commits nothing (was 24, 20 and 23: its transaction,
# the lock's check and the fence): the run's row counts it. A new statement on every
# scheduled run should be a choice: raise the count here, and say why in the commit.
STATEMENTS = {"sqlite": 21, "postgresql": 17, "mysql": 19}
# What a run with nothing new still does: takes the lock, saves the watermark, reads the
# ledger's head for its checkpoint; and the watermark's transaction is fenced (the write
# epoch checked in it, before the run's row is closed).
STILL = {
    "lock": re.compile(r"pg_try_advisory_lock|GET_LOCK|^BEGIN IMMEDIATE"),
    "watermark": re.compile(r"^INSERT INTO zendesk_audit_sync_state"),
    "checkpoint": re.compile(r"FROM zendesk_audit_ledger_head"),
}
FENCE = re.compile(r"^UPDATE zendesk_audit_owners SET commits")
CLOSE = re.compile(r"^UPDATE zendesk_audit_sync_runs SET finished_at")
# Statements that look the schema up (Alembic's, or SQLAlchemy's inspector): a run on a
# current schema reads the version table and nothing else of the catalogue.
CATALOGUE = re.compile(r"PRAGMA \w+\.table_info|pg_catalog|information_schema|DESCRIBE", re.I)


@pytest.fixture
def sim(shared_sim: SimulatedZendesk) -> SimulatedZendesk:
    """The module's simulator (1,500 records over three days): these tests only read."""
    return shared_sim


def test_a_sync_with_nothing_new_asks_once_and_runs_a_few_statements(
    tmp_path: Path, db_url: str, sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": True})
    assert run_cli("--config", str(config), "--quiet", "sync").returncode == 0
    sim.clear_log()
    statements = _statements_of(config)
    assert len(sim.requests) == 1
    listing = "\n".join(statements)
    assert not [s for s in statements if CATALOGUE.search(s)], listing
    kind = db_url.split(":")[0].split("+")[0]
    assert len(statements) <= STATEMENTS[kind], listing
    missing = [name for name, seen in STILL.items() if not any(map(seen.search, statements))]
    assert missing == [], listing
    saved = next(i for i, s in enumerate(statements) if STILL["watermark"].search(s))
    closed = next(i for i, s in enumerate(statements) if CLOSE.search(s))
    assert any(map(FENCE.search, statements[saved:closed])), listing
    assert _last_run(db_url) == (1, 0, 0)  # the empty page counted when the run closed


# A run that re-reads records stored already (the overlap: 250 records, 3 pages) and finds
# nothing new: each page one read of the stored rows it re-read, compared as the upsert
# compares, and no transaction, as there is nothing to write. Was 44 on PostgreSQL, 49 on
# MariaDB, 51 on SQLite: a page's transaction was 9 statements (10 with SQLite's BEGIN,
# MariaDB's sequence read).
OVERLAP_STATEMENTS = {"sqlite": 27, "postgresql": 20, "mysql": 22}
# What a changed page writes (the run's end still saves the watermark, read back).
WRITES = re.compile(r"(INSERT INTO|UPDATE) zendesk_audit_(logs|ledger|store_seq)\b")


def test_a_sync_rereading_the_overlap_writes_nothing_and_reads_once_a_page(
    tmp_path: Path, db_url: str
) -> None:
    records = [audit_record(6_000_000_000_000 + i, recent(8)) for i in range(250)]
    with SimulatedZendesk(records) as sim:
        config = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": True})
        assert run_cli("--config", str(config), "--quiet", "sync").returncode == 0
        sim.clear_log()
        statements = _statements_of(config)
        assert len(sim.requests) == 3
    listing = "\n".join(statements)
    kind = db_url.split(":")[0].split("+")[0]
    assert len(statements) <= OVERLAP_STATEMENTS[kind], listing
    assert not [s for s in statements if WRITES.search(s)], listing
    assert _last_run(db_url) == (3, 0, 0)  # the pages still counted


def _last_run(db_url: str) -> tuple[Any, ...]:
    """The newest run's pages, rows inserted and rows updated."""
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            last = "SELECT pages, rows_inserted, rows_updated FROM zendesk_audit_sync_runs"
            row = conn.execute(sa.text(f"{last} ORDER BY id DESC")).first()
    finally:
        engine.dispose()
    assert row is not None
    return tuple(row)


def _statements_of(config: Path) -> list[str]:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        done = run_cli("--config", str(config), "--quiet", "sync")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert done.returncode == 0, done.stderr
    return statements


# What a PostgreSQL run with nothing new waits for once connected (libpq's trace: each
# simple Query, and each Sync ending a statement's extended-protocol messages, is one round
# trip): 6 in SQLAlchemy's dialect's first connect (BEGIN, version, schema, isolation,
# standard_conforming_strings, ROLLBACK: asking them in one statement meant overriding
# its private hooks, for a millisecond; not kept), 1 a connection for its session
# settings, the version read and the lock with its session setting (autocommit: no
# BEGIN, no ROLLBACK), the reads of one statement (autocommit too), then the run's
# transactions. Was 48, then 44 (before the reads' and the empty page's transactions went).
POSTGRESQL_ROUND_TRIPS = 35


@pytest.mark.databases("postgresql")
def test_a_postgresql_sync_with_nothing_new_makes_few_round_trips(
    tmp_path: Path, db_url: str, sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": True})
    assert run_cli("--config", str(config), "--quiet", "sync").returncode == 0
    fd, path = tempfile.mkstemp()

    def traced(dbapi: Any, record: Any) -> None:
        dbapi.pgconn.trace(fd)

    event.listen(Engine, "connect", traced)
    try:
        done = run_cli("--config", str(config), "--quiet", "sync")
        trace = Path(path).read_text()
    finally:
        event.remove(Engine, "connect", traced)
        os.close(fd)
        os.unlink(path)
    assert done.returncode == 0, done.stderr
    waits = re.findall(r"\tF\t\d+\t(?:Query|Sync)\b.*", trace)
    assert 0 < len(waits) <= POSTGRESQL_ROUND_TRIPS, "\n".join(waits)
    assert not re.search(r'\tF\t\d+\tQuery\t "SET idle_session_timeout', trace)


# What three transactions in a row send, each BEGIN, SELECT, COMMIT on PostgreSQL (no ping
# between them); MariaDB's counters of pings and ROLLBACKs.
POSTGRESQL_MESSAGES = ["BEGIN", "SELECT 1", "COMMIT"] * 3
MARIADB_COUNTERS = (
    "SHOW SESSION STATUS WHERE Variable_name IN ('Com_admin_commands', 'Com_rollback')"
)


@pytest.mark.databases("postgresql", "mysql")
def test_transactions_in_a_row_pay_no_ping_and_no_reset(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's transactions follow each other: no ping before each (pool_pre_ping cost 14
    round trips a run), and on MariaDB no ROLLBACK after each COMMIT (13 more)."""
    monkeypatch.setattr(sessions, "PING_AFTER_IDLE_S", 3600.0)  # however slow this host is
    engine = open_engine(db_url)
    try:
        if engine.dialect.name == "postgresql":
            assert _postgresql_messages(engine) == POSTGRESQL_MESSAGES
        else:
            with engine.begin() as conn:
                before = _counters(conn)
            for _ in range(3):
                with engine.begin() as conn:
                    conn.exec_driver_sql("SELECT 1")
            with engine.begin() as conn:
                after = _counters(conn)
            assert after == before
    finally:
        engine.dispose()


def _counters(conn: sa.Connection) -> dict[str, str]:
    return {str(name): str(value) for name, value in conn.exec_driver_sql(MARIADB_COUNTERS)}


def _postgresql_messages(engine: Engine) -> list[str]:
    """The queries the client sends for three transactions in a row (libpq's trace)."""
    fd, path = tempfile.mkstemp()
    try:
        event.listen(engine, "connect", lambda dbapi, record: dbapi.pgconn.trace(fd))
        for _ in range(3):
            with engine.begin() as conn:
                conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        trace = Path(path).read_text()
    finally:
        os.close(fd)
        os.unlink(path)
    return re.findall(r'\tF\t\d+\tQuery\t "([^"]*)"', trace)


@pytest.mark.databases("postgresql", "mysql")
def test_a_connection_dropped_while_idle_is_replaced(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guarantee pool_pre_ping gave: a pooled connection the server closed while it
    sat idle (a restart, an idle timeout) is pinged, found dead and replaced unseen."""
    monkeypatch.setattr(sessions, "PING_AFTER_IDLE_S", 0.0)
    engine = open_engine(db_url)
    admin = sa.create_engine(parse_url(db_url), isolation_level="AUTOCOMMIT")
    try:
        with engine.begin() as conn:
            first = _session_id(conn)
        with admin.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            else:
                conn.exec_driver_sql(f"KILL CONNECTION {int(first)}")
        with engine.begin() as conn:
            assert _session_id(conn) != first
    finally:
        admin.dispose()
        engine.dispose()


def _session_id(conn: sa.Connection) -> int:
    query = (
        "SELECT pg_backend_pid()" if conn.dialect.name == "postgresql" else "SELECT CONNECTION_ID()"
    )
    return int(conn.exec_driver_sql(query).scalar_one())


@pytest.mark.databases("mysql")
def test_a_connection_returned_inside_a_transaction_is_rolled_back(db_url: str) -> None:
    """Only the ROLLBACK after a COMMIT is spared: a connection handed back with a
    transaction open (raw DBAPI use) still goes back to the pool rolled back."""
    engine = open_engine(db_url)
    try:
        raw = engine.raw_connection()
        cursor = raw.cursor()
        cursor.execute("CREATE TEMPORARY TABLE held (x INT) ENGINE=InnoDB")
        cursor.execute("INSERT INTO held VALUES (1)")
        cursor.close()
        raw.close()  # back to the pool, the INSERT uncommitted
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT @@in_transaction").scalar_one() == 0
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM held").scalar_one() == 0
    finally:
        engine.dispose()


def test_pymysql_preferred_tls_context_is_pymysqls_made_when_used() -> None:
    """Where the server offers TLS the handshake gets PyMySQL's own context (no ``ssl_*``
    option: TLS preferred), made then; with an ``ssl_*`` option, up front as before."""
    from pymysql.connections import Connection

    from etl.storage.drivers.pymysql_start import ContextWhenUsed, quick_tls_connection

    quick = quick_tls_connection()(defer_connect=True)
    theirs = Connection(defer_connect=True).ctx
    assert isinstance(quick.ctx, ContextWhenUsed) and "context" not in vars(quick.ctx)
    ours = quick.ctx.context
    settings = (
        "protocol", "options", "verify_mode", "verify_flags", "check_hostname",
        "minimum_version", "maximum_version",
    )  # fmt: skip
    assert [getattr(ours, name) for name in settings] == [
        getattr(theirs, name) for name in settings
    ]
    assert ours.cert_store_stats() == theirs.cert_store_stats()
    checked = quick_tls_connection()(defer_connect=True, ssl_verify_cert=True)
    assert isinstance(checked.ctx, ssl.SSLContext)


def test_pymysqls_private_context_hook_is_still_the_one_overridden() -> None:
    """``quick_tls_connection`` overrides PyMySQL's private ``_create_ssl_ctx(self, sslp)``
    (no public option can: etl/storage/drivers/pymysql_start.py), which ``__init__`` calls
    once, with ``{}`` where TLS is preferred, and keeps what it returns as the handshake's
    context. An upgrade that renames, re-signs or stops calling it fails here, by name."""
    from pymysql.connections import Connection

    hook = getattr(Connection, "_create_ssl_ctx", None)
    assert callable(hook), "PyMySQL has no Connection._create_ssl_ctx any more"
    assert list(inspect.signature(hook).parameters) == ["self", "sslp"], (
        f"PyMySQL's Connection._create_ssl_ctx is now {inspect.signature(hook)}"
    )
    asked: list[Any] = []
    made = object()

    class Spy(Connection):  # type: ignore[misc]  # PyMySQL has no hints
        def _create_ssl_ctx(self, sslp: Any) -> Any:
            asked.append(sslp)
            return made

    assert Spy(defer_connect=True).ctx is made and asked == [{}], "preferred TLS's context"
    asked.clear()
    Spy(defer_connect=True, ssl_verify_cert=True)
    assert len(asked) == 1 and asked[0], "an ssl_* option's context is asked for with it"


@pytest.mark.databases("mysql")
def test_a_pymysql_connection_does_not_read_the_ca_store(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """25 ms of CPU a connection, two a run: only a URL with an ``ssl_*`` option, which
    checks the server against a CA, pays for reading one."""
    loads: list[object] = []
    real = ssl.SSLContext.load_default_certs

    def load_default_certs(context: ssl.SSLContext, *args: Any) -> None:
        loads.append(context)
        real(context, *args)

    monkeypatch.setattr(ssl.SSLContext, "load_default_certs", load_default_certs)
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()
    assert loads == []


def test_every_dataclass_has_a_docstring_of_its_own() -> None:
    """A dataclass without one gets ``Name(signature)`` made by ``inspect.signature`` as
    the class is made: 6 M instructions of a run with nothing new for the 22 it imports."""
    for found in pkgutil.walk_packages(etl.__path__, "etl."):
        if not found.name.endswith("__main__"):  # __main__ runs the command line
            importlib.import_module(found.name)
    made = [
        value
        for name, module in list(sys.modules.items())
        if name == "etl" or name.startswith("etl.")
        for value in vars(module).values()
        if isinstance(value, type) and dataclasses.is_dataclass(value)
        and value.__module__ == name
    ]  # fmt: skip
    assert len(made) > 50
    generated = [c.__qualname__ for c in made if (c.__doc__ or "").startswith(c.__name__ + "(")]
    assert generated == []
