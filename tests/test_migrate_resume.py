"""A ``migrate`` killed at any point is finished by the next one, on every database.

MariaDB/MySQL commit each DDL statement: a kill leaves some tables, indexes and columns
of a revision and no version row for it. The deterministic test looks, before each
schema-changing statement of an upgrade, at what another session sees (what a kill there
leaves); where that is anything but the empty database it started from (MariaDB), it
stops the upgrade there and the next ``migrate`` must finish it. The other SIGKILLs the
real CLI at random moments. After either, ``migrate`` and ``sync`` succeed and the schema
is the head's.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from parts.cli import CLI_ENV, cli_command, run_cli
from parts.configs import write_config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from support import assert_table_matches, audit_record, recent

from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.coltypes import MYSQL_DIALECTS
from etl.storage.schema.every_table import metadata
from etl.storage.schema.metadata import VERSION_TABLE
from zendesk_sim import SimulatedZendesk

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_CHANGES = ("CREATE", "ALTER", "INSERT", "UPDATE")


class Killed(Exception):
    """Stands for SIGKILL: the statement it interrupts never reaches the server."""


def drop_everything(engine: Engine) -> None:
    """Every table. On the servers in one statement: reflecting the schema and dropping
    table by table cost a sixth of this module's time on MariaDB (each DROP of an InnoDB
    table is a file removed and a commit)."""
    name = engine.dialect.name
    if name == "sqlite":  # in the order the foreign keys need, as cheap as any here
        found = sa.MetaData()
        found.reflect(engine)
        found.drop_all(engine)
        return
    with engine.begin() as conn:
        tables = sa.inspect(conn).get_table_names()
        if not tables:
            return
        if name in MYSQL_DIALECTS:
            listed = ", ".join(f"`{table}`" for table in tables)
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            try:
                conn.exec_driver_sql(f"DROP TABLE {listed}")
            finally:
                conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        else:
            listed = ", ".join(f'"{table}"' for table in tables)
            conn.exec_driver_sql(f"DROP TABLE {listed} CASCADE")
    assert not sa.inspect(engine).get_table_names()


_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")


def tables_of(engine: Engine) -> dict[str, str]:
    """MariaDB's own word for each table: columns, keys, indexes, foreign keys."""
    with engine.connect() as conn:
        return {
            table: _AUTO_INCREMENT.sub(
                "", conn.execute(sa.text(f"SHOW CREATE TABLE {table}")).one()[1]
            )
            for table in sa.inspect(conn).get_table_names()
        }


def assert_at_head(engine: Engine) -> None:
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        assert compare_metadata(context, metadata) == []


def upgrade_killed_before(engine: Engine, k: int, revision: str = "head") -> int:
    """Upgrade (to ``revision``), stopped before its ``k``-th schema-changing statement
    (never, if there are fewer); how many it ran."""
    seen = 0

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal seen
        if statement.lstrip().upper().startswith(SCHEMA_CHANGES):
            seen += 1
            if seen == k:
                raise Killed(statement.split("(")[0].strip())

    event.listen(engine, "before_cursor_execute", count)
    try:
        migrate.upgrade(engine, revision)
    except Killed:
        pass
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


Snapshot = tuple[dict[str, str], dict[str, list[dict[str, Any]]]]


def snapshot(engine: Engine) -> Snapshot:
    """The tables as MariaDB states them, and the rows of those that hold any."""
    tables = tables_of(engine)
    rows: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as conn:
        for table in tables:
            found = conn.execute(sa.text(f"SELECT * FROM {table}")).mappings().all()
            if found:
                rows[table] = [dict(row) for row in found]
    return tables, rows


EMPTY: Snapshot = ({}, {})


def reach(engine: Engine, target: Snapshot) -> None:
    """Make the MariaDB database exactly a snapshot: its tables as MariaDB states them, and
    its rows. Only what differs is changed: after a kill and the ``migrate`` that finished
    its revision, the few tables that revision touched. Dropping every table and creating
    the snapshot's again, for each kill (each an InnoDB file made or removed, and a
    commit), made this the suite's longest test."""
    tables, rows = snapshot(engine)
    want, want_rows = target
    wrong = [table for table in tables if tables[table] != want.get(table)]
    missing = [table for table in want if tables.get(table) != want[table]]
    refill = [t for t in want if t not in missing and rows.get(t) != want_rows.get(t)]
    with engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            if wrong:
                conn.exec_driver_sql(f"DROP TABLE {', '.join(f'`{t}`' for t in wrong)}")
            for table in missing:
                conn.exec_driver_sql(want[table].replace("%", "%%"))
            for table in refill:
                conn.exec_driver_sql(f"DELETE FROM `{table}`")
            for table in missing + refill:
                if values := want_rows.get(table):
                    columns: list[sa.ColumnClause[Any]] = [sa.column(c) for c in values[0]]
                    conn.execute(sa.table(table, *columns).insert(), values)
        finally:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
    assert snapshot(engine) == target  # the copy is exact, or what follows proves nothing


def committed_before_each_statement(engine: Engine) -> list[frozenset[str]]:
    """A whole upgrade, counted; before each of its schema-changing statements, the tables
    another session sees: what a kill there leaves (the killed session's open transaction
    is rolled back, and the statement it was about to send never reaches the server)."""
    seen: list[frozenset[str]] = []

    def look(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(SCHEMA_CHANGES):
            # A session of its own each time: one kept open could read an old snapshot.
            with engine.connect() as other:
                seen.append(frozenset(sa.inspect(other).get_table_names()))

    event.listen(engine, "before_cursor_execute", look)
    try:
        migrate.upgrade(engine)
    finally:
        event.remove(engine, "before_cursor_execute", look)
    return seen


def test_migrate_finishes_what_a_kill_anywhere_left(engine: Engine) -> None:
    mysql = engine.dialect.name in MYSQL_DIALECTS
    revisions = migrate.revisions_in_order()
    clean: dict[str, dict[str, str]] = {}  # MariaDB: each revision's tables, migrated from empty
    states: dict[str, Snapshot] = {}  # ... and rows (the version's)
    through: dict[str, int] = {}  # ... and the statements from empty to it
    for revision in revisions if mysql else ():
        ran = upgrade_killed_before(engine, 0, revision)  # this revision's statements
        through[revision] = max(through.values(), default=0) + ran
        states[revision] = snapshot(engine)
        clean[revision] = states[revision][0]
    drop_everything(engine)
    left = committed_before_each_statement(engine)  # what a kill before each would leave
    statements = len(left)
    assert statements >= 15
    assert not mysql or through[revisions[-1]] == statements  # revision by revision: the same
    assert_at_head(engine)
    for k in range(1, statements + 1):
        if not left[k - 1]:
            # Nothing committed before the k-th statement (PostgreSQL and SQLite migrate in
            # one transaction): a kill there leaves the empty database the upgrade above
            # started from, and the next `migrate` is that upgrade.
            continue
        # MariaDB: the last revision the upgrade from empty finished before its k-th statement
        # is copied, and the upgrade from there runs to that statement: what the kill left.
        done = [r for r in revisions if mysql and through[r] < k]
        if mysql:
            reach(engine, states[done[-1]] if done else EMPTY)
        else:
            drop_everything(engine)
        skipped = through[done[-1]] if done else 0
        assert upgrade_killed_before(engine, k - skipped) == k - skipped
        assert frozenset(sa.inspect(engine).get_table_names()) == left[k - 1], k
        if mysql:
            # The next `migrate` finishes the revision the kill interrupted (the one after
            # the version recorded), which must leave exactly what a clean upgrade to it
            # does: from there on it is the whole upgrade above, already at the head.
            recorded = migrate.current_revision(engine)
            interrupted = revisions[revisions.index(recorded) + 1 if recorded else 0]
            migrate.upgrade(engine, interrupted)
            assert migrate.current_revision(engine) == interrupted, k
            assert tables_of(engine) == clean[interrupted], k
        else:
            migrate.upgrade(engine)  # the next `migrate`
            assert_at_head(engine)
    # And the last one, for real from empty (what it leaves is what was seen above), then
    # finished to the head.
    drop_everything(engine)
    upgrade_killed_before(engine, statements)
    assert frozenset(sa.inspect(engine).get_table_names()) == left[-1]
    migrate.upgrade(engine)
    assert_at_head(engine)


def test_a_kill_inside_0002_leaves_0001_recorded_and_is_finished(engine: Engine) -> None:
    """0001 -> 0002 killed after its first statement (MariaDB: the slice table is made)."""
    migrate.upgrade(engine, "0001")
    seen = 0

    def kill_second(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal seen
        if statement.lstrip().upper().startswith(SCHEMA_CHANGES):
            seen += 1
            if seen == 2:
                raise Killed(statement)

    event.listen(engine, "before_cursor_execute", kill_second)
    with pytest.raises(Killed):
        migrate.upgrade(engine)
    event.remove(engine, "before_cursor_execute", kill_second)
    assert migrate.current_revision(engine) == "0001"
    migrate.upgrade(engine)
    assert_at_head(engine)


def test_sigkill_during_migrate_then_migrate_and_sync_succeed(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(7)
    records = [audit_record(1000 + i, recent(60 - i / 10)) for i in range(300)]
    engine = open_engine(db_url)
    with SimulatedZendesk(records) as sim:
        config = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": False})
        for _ in range(4):
            drop_everything(engine)
            proc = subprocess.Popen(
                cli_command(config, "--quiet", "migrate"), env=CLI_ENV, cwd=ROOT
            )
            # A random moment of start-up or migration: the kill is the subject.
            time.sleep(rng.uniform(0.2, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            # The next `migrate` in process: what it does with what the kill left counts.
            again = run_cli("--config", str(config), "--quiet", "migrate")
            assert again.returncode == 0, again.stderr
            assert_at_head(engine)
        synced = run_cli("--config", str(config), "--quiet", "sync")
        assert synced.returncode == 0, synced.stderr
        assert_table_matches(db_url, sim.visible_records())
    engine.dispose()
