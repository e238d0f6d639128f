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


def upgrade_killed_before(engine: Engine, k: int) -> int:
    """Upgrade from empty, stopped before its ``k``-th schema-changing statement (never, if
    there are fewer); how many it ran."""
    seen = 0

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        nonlocal seen
        if statement.lstrip().upper().startswith(SCHEMA_CHANGES):
            seen += 1
            if seen == k:
                raise Killed(statement.split("(")[0].strip())

    event.listen(engine, "before_cursor_execute", count)
    try:
        migrate.upgrade(engine)
    except Killed:
        pass
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return seen


def test_migrate_finishes_what_a_kill_anywhere_left(engine: Engine) -> None:
    mysql = engine.dialect.name in MYSQL_DIALECTS
    revisions = migrate.revisions_in_order()
    clean: dict[str, dict[str, str]] = {}  # MariaDB: each revision's tables, migrated from empty
    for revision in revisions if mysql else ():
        migrate.upgrade(engine, revision)
        clean[revision] = tables_of(engine)
    drop_everything(engine)
    statements = upgrade_killed_before(engine, 0)  # a whole upgrade, counted
    assert statements >= 15
    assert_at_head(engine)
    drop_everything(engine)
    for k in range(1, statements + 1):
        assert upgrade_killed_before(engine, k) == k
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
