"""A filled test database copied into a test's own: for tests that each change (or only read)
a store that is slow to build, so it is built once a module and kind and each test gets
a copy (``copy_database``): SQLite's backup of the file, PostgreSQL's ``CREATE DATABASE
... TEMPLATE``, on MariaDB the template's tables and the source's rows.

The copy is the source's schema and rows exactly, so the test database is kept or dropped
afterwards as any other (``db_pool``, ``mysql_pool``)."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .databases import keep_empty, kind_of, migrate_from_template, server_admin
from .kept import KeptDatabases, new_name

_SESSIONS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = :s AND pid <> pg_backend_pid()"
)
_ANY_SESSION = "SELECT 1 FROM pg_stat_activity WHERE datname = :s AND pid <> pg_backend_pid()"


def copy_database(source: str, target: str) -> None:
    """Give the empty database at ``target`` the schema and rows of ``source`` (same kind;
    on MariaDB at the current schema, as a filled copy of the template is). Nothing may be
    writing to ``source`` meanwhile."""
    kind = kind_of(source)
    assert kind_of(target) == kind, (source, target)
    if kind == "sqlite":
        _copy_sqlite(source, target)
    elif kind == "postgresql":
        _copy_postgresql(str(make_url(source).database), str(make_url(target).database))
    else:
        _copy_mariadb(str(make_url(source).database), target)


def _copy_sqlite(source: str, target: str) -> None:
    # The backup API, not a file copy: what a WAL not yet checkpointed holds comes too.
    origin = sqlite3.connect(str(make_url(source).database))
    copy = sqlite3.connect(str(make_url(target).database))
    try:
        origin.backup(copy)
    finally:
        copy.close()
        origin.close()


def _copy_postgresql(source: str, target: str) -> None:
    """PostgreSQL copies a database only while nobody is connected to it: sessions the
    build left (an engine never disposed) are ended first, as a drop would end them."""
    admin = server_admin("postgresql")
    with admin.connect() as conn:
        KeptDatabases.alone(
            lambda: conn.execute(sa.text(_ANY_SESSION), {"s": source}).first() is not None,
            lambda: conn.execute(sa.text(_SESSIONS), {"s": source}),
        )
        # The empty one renamed aside and kept for a later test, not dropped: on PostgreSQL
        # a drop is a checkpoint, a rename a catalog row.
        hold = new_name()
        conn.execute(sa.text(f"ALTER DATABASE {target} RENAME TO {hold}"))
        keep_empty("postgresql", hold)
        conn.execute(sa.text(f"CREATE DATABASE {target} TEMPLATE {source}"))
        # a database's settings are not copied: as every test database (``databases``)
        conn.execute(sa.text(f"ALTER DATABASE {target} SET synchronous_commit = off"))


def _copy_mariadb(source: str, url: str) -> None:
    """The target at the template's schema (``migrate_from_template``: a kept migrated
    database's tables moved in, or the template's ``CREATE TABLE``s), then each of the
    source's tables' rows in place of the template's; the counters follow the rows."""
    assert migrate_from_template(url), url
    target = make_url(url).database
    admin = server_admin("mysql")
    with admin.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": source},
        ).scalars()
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        try:
            for table in list(tables):
                conn.execute(sa.text(f"DELETE FROM {target}.{table}"))
                conn.execute(
                    sa.text(f"INSERT INTO {target}.{table} SELECT * FROM {source}.{table}")
                )
        finally:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
