"""A run's lock lost while its process lives, as a database's administrator or a failover
loses it: the session holding it ended from another connection, or SQLite's lock file
deleted. The fencing and lock-lost tests both need it, on all three databases."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.storage.engine import sqlite_path
from etl.storage.locking.lock import lock_file, mysql_lock_name
from etl.storage.schema.coltypes import MYSQL_DIALECTS


def lose_lock(engine: Engine, name: str = "acme") -> None:
    """End the session that holds lock ``name`` (an account's, or ``export:CONSUMER``) from
    another connection (SQLite: delete its lock file, the one way a file lock goes while
    its process lives)."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        database = sqlite_path(engine.url)
        assert database is not None
        lock_file(database, name).unlink()
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if dialect == "postgresql":
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND database = "
                    "(SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalars()
            assert list(killed) == [True]
        else:
            assert dialect in MYSQL_DIALECTS
            lock = mysql_lock_name(engine.url.database or "", name)
            holder = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": lock}).scalar()
            assert holder is not None
            conn.execute(sa.text(f"KILL {int(holder)}"))
