"""A filled test database copied into a test's own: for tests that each change (or only read)
a store that is slow to build, so it is built once a module and kind and each test gets
a copy (``copy_database``): SQLite's backup of the file, PostgreSQL's ``CREATE DATABASE
... TEMPLATE``, MariaDB's tables as the source states them and their rows.

The copy is the source's schema and rows exactly, so the test database is kept or dropped
afterwards as any other (``db_pool``, ``mysql_pool``)."""

from __future__ import annotations

import re
import sqlite3

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .databases import SERVER_URLS, kind_of, server_admin
from .kept import KeptDatabases

_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")

_SESSIONS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = :s AND pid <> pg_backend_pid()"
)
_ANY_SESSION = "SELECT 1 FROM pg_stat_activity WHERE datname = :s AND pid <> pg_backend_pid()"


def copy_database(source: str, target: str) -> None:
    """Give the empty database at ``target`` the schema and rows of ``source`` (same kind).
    Nothing may be writing to ``source`` meanwhile."""
    kind = kind_of(source)
    assert kind_of(target) == kind, (source, target)
    if kind == "sqlite":
        _copy_sqlite(source, target)
    elif kind == "postgresql":
        _copy_postgresql(str(make_url(source).database), str(make_url(target).database))
    else:
        _copy_mariadb(str(make_url(source).database), str(make_url(target).database))


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
        conn.execute(sa.text(f"DROP DATABASE {target} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {target} TEMPLATE {source}"))
        # a database's settings are not copied: as every test database (``databases``)
        conn.execute(sa.text(f"ALTER DATABASE {target} SET synchronous_commit = off"))


def _copy_mariadb(source: str, target: str) -> None:
    """Each table as the source's own ``CREATE TABLE`` states it (foreign keys and all),
    then its rows; the counters follow the rows."""
    admin = server_admin("mysql")
    with admin.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": source},
        ).scalars()
        conn.execute(sa.text(f"USE {target}"))
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        try:
            for table in list(tables):
                ddl = conn.execute(sa.text(f"SHOW CREATE TABLE {source}.{table}")).one()[1]
                conn.exec_driver_sql(_AUTO_INCREMENT.sub("", ddl).replace("%", "%%"))
                conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {source}.{table}"))
        finally:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
            # Back to the server's own database: a pooled connection left in this one
            # would look like a session left in it when the test is over (``mysql_pool``).
            conn.execute(sa.text(f"USE {make_url(SERVER_URLS['mysql']).database}"))
