"""A ``migrate`` killed at any point is finished by the next one, on every database.

MariaDB/MySQL commit each DDL statement: a kill leaves some tables, indexes and columns
of a revision and no version row for it. The deterministic test stops the upgrade before
its k-th schema-changing statement, for every k (what a kill there leaves); the other
SIGKILLs the real CLI at random moments. After either, ``migrate`` and ``sync`` succeed
and the schema is the head's.
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


def restore(engine: Engine, state: Snapshot) -> None:
    """Give an empty database exactly a snapshot's tables and rows: what the upgrade from
    empty to it leaves, one CREATE a table (the upgrade's every ALTER and index on MariaDB,
    each a commit and often a table rebuilt, made this the suite's longest test)."""
    tables, rows = state
    with engine.begin() as conn:
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
        try:
            for ddl in tables.values():
                conn.exec_driver_sql(ddl.replace("%", "%%"))
            for table, values in rows.items():
                conn.execute(sa.table(table, *(sa.column(c) for c in values[0])).insert(), values)
        finally:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
    assert tables_of(engine) == tables  # the copy is exact, or what follows proves nothing


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
    statements = upgrade_killed_before(engine, 0)  # a whole upgrade, counted
    assert statements >= 15
    assert not mysql or through[revisions[-1]] == statements  # revision by revision: the same
    assert_at_head(engine)
    drop_everything(engine)
    for k in range(1, statements + 1):
        # MariaDB: the last revision the upgrade from empty finished before its k-th statement
        # is copied, and the upgrade from there runs to that statement: what the kill left.
        done = [r for r in revisions if mysql and through[r] < k]
        if done:
            restore(engine, states[done[-1]])
        skipped = through[done[-1]] if done else 0
        assert upgrade_killed_before(engine, k - skipped) == k - skipped
        if not sa.inspect(engine).get_table_names():
            # Rolled back whole (PostgreSQL and SQLite migrate in one transaction): the
            # next `migrate` starts from empty, as the first upgrade above did.
            continue
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
        drop_everything(engine)
    upgrade_killed_before(engine, statements)  # and the last one, finished to the head
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
