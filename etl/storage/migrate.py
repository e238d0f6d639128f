"""Alembic from code: the only owner of the schema version.

There is no alembic.ini: the config is built here, the migrations folder is found
next to the package (an installed wheel ships it as ``etl/migrations``) or in the
source checkout, and env.py receives an open connection. ``ensure_current`` is what
every command calls before touching the tables: on an empty or older schema it
upgrades (``auto_migrate``) or stops with the exact command to run; on a schema
from a newer version of this code it stops.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

import etl
from etl.common.errors import DatabaseError, SchemaError
from etl.storage.engine import SQLITE_IMMEDIATE, database_errors
from etl.storage.schema.coltypes import MYSQL_DIALECTS
from etl.storage.schema.metadata import VERSION_TABLE

if TYPE_CHECKING:  # Alembic costs ~0.15 s to import: only migrations need it, not every run
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

# The newest revision in migrations/versions. tests/test_migrations.py keeps it equal to
# Alembic's head, so that a run on a current schema is checked without importing Alembic.
SCHEMA_HEAD = "0013"

# Two processes upgrading at once (auto_migrate from cron) take turns on this lock.
_LOCK_NAME = "zendesk-audit-etl:migrate"
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(_LOCK_NAME.encode()).digest()[:8], signed=True)
_MYSQL_LOCK_WAIT_S = 60


def migrations_dir() -> Path:
    """``etl/migrations`` in an installed package, else ``migrations/`` of the checkout."""
    package = Path(etl.__file__).resolve().parent
    installed = package / "migrations"
    if (installed / "env.py").is_file():
        return installed
    return package.parent / "migrations"


def make_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    # Config values go through ConfigParser interpolation: a literal % must be doubled.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:
        alembic_log.setLevel(logging.WARNING)  # its INFO lines say nothing useful to our users
    return config


def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(make_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise SchemaError(f"no migrations found in {migrations_dir()}")
    return head


def known_revisions() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def revisions_in_order() -> list[str]:
    """Every revision, the first one first (``upgrade`` goes forwards only)."""
    return [script.revision for script in _scripts().walk_revisions()][::-1]


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def current_revision(engine: Engine) -> str | None:
    """The schema's revision, or None for a database this code has never migrated."""
    with database_errors(engine, "reading the schema version"), engine.connect() as conn:
        return _current(conn)


def stored_revision(conn: Connection) -> str | None:
    """The version table's one revision by plain SQL, without Alembic and without looking
    the table up first (a database error if there is no table; None for none or several).
    ``etl.storage.store.open_store`` reads it as its connection check (``check_connection``)."""
    found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return found[0] if len(found) == 1 else None


def _stored_revision(engine: Engine) -> str | None:
    """``stored_revision``, None when there is no version table."""
    with database_errors(engine, "reading the schema version"), engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        return stored_revision(conn)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to run while another process does the same."""
    with database_errors(engine, "migrating the schema"), engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild tables: with foreign keys enforced, dropping a
            # referenced table would fail or cascade. Off for the migration (it can only
            # change outside a transaction), checked before commit, on again after.
            _sqlite_pragma(conn, "PRAGMA foreign_keys = OFF")
        try:
            with conn.execution_options(**{SQLITE_IMMEDIATE: True}).begin():
                with _migration_lock(conn):
                    before = _current(conn)
                    _refuse_unknown(before)
                    from alembic import command

                    command.upgrade(make_config(conn), revision)
                    after = _current(conn)
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise SchemaError(f"migrating to {after} broke foreign keys; rolled back")
        finally:
            if sqlite:
                _sqlite_pragma(conn, "PRAGMA foreign_keys = ON")
    if before != after:
        log.info("database schema upgraded from %s to %s", before or "empty", after)


def _sqlite_pragma(conn: Connection, pragma: str) -> None:
    """Run a PRAGMA outside any transaction (SQLAlchemy would BEGIN first)."""
    conn.connection.driver_connection.execute(pragma)  # type: ignore[union-attr]


def upgrade_sql(dialect_name: str, revision: str = "head") -> str:
    """The DDL that ``upgrade`` would run on an empty database, for a DBA to review."""
    config = make_config()
    config.attributes["dialect_name"] = dialect_name
    buffer = io.StringIO()
    config.output_buffer = buffer
    from alembic import command

    command.upgrade(config, revision, sql=True)
    return buffer.getvalue()


def ensure_current(
    engine: Engine, *, auto_migrate: bool, migrate_hint: str, stored: str | None = None
) -> None:
    """Return if the schema is this code's; upgrade it or raise ``SchemaError`` otherwise.

    ``migrate_hint`` is the exact command for the user, e.g.
    ``"run: zendesk-audit-etl migrate --config /etc/zendesk-audit-etl.toml"``.
    ``stored``: the revision the caller already read (``stored_revision``), if any.
    """
    if (stored or _stored_revision(engine)) == SCHEMA_HEAD:
        return  # the usual case, without loading Alembic
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    _refuse_unknown(current)
    if auto_migrate:
        upgrade(engine)
        return
    if current is None:
        raise SchemaError(f"the database has no zendesk-audit-etl tables yet; {migrate_hint}")
    raise SchemaError(
        f"the database schema is at revision {current}, this version needs {head}; {migrate_hint}"
    )


def _refuse_unknown(current: str | None) -> None:
    if current is not None and current not in known_revisions():
        raise SchemaError(
            f"the database was migrated by a newer version of zendesk-audit-etl (schema "
            f"revision {current}; this version knows up to {head_revision()}); "
            "upgrade zendesk-audit-etl"
        )


@contextmanager
def _migration_lock(conn: Connection) -> Iterator[None]:
    """Serialize concurrent upgrades. SQLite needs nothing: BEGIN IMMEDIATE already does."""
    name = conn.dialect.name
    if name == "postgresql":
        # A migration may rebuild a large table: no statement limit for this transaction.
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        yield
    elif name in MYSQL_DIALECTS:
        got = conn.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": _LOCK_NAME, "wait": _MYSQL_LOCK_WAIT_S}
        ).scalar()
        if got != 1:
            raise DatabaseError(
                f"another process has been migrating the schema for {_MYSQL_LOCK_WAIT_S} s; "
                "retry later"
            )
        try:
            yield
        finally:
            conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
    else:
        yield
