"""Fresh databases for the benchmarks: a SQLite file in its own temporary directory, or a
uniquely named PostgreSQL or MariaDB database, each dropped by the run's ``Cleanup``."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from benchkit.support import ACCOUNT, Cleanup


class Databases:
    """Fresh databases: a SQLite file in its own temporary directory, or a uniquely named
    PostgreSQL or MariaDB database (created and dropped as tests/conftest.py does)."""

    def __init__(
        self, cleanup: Cleanup, postgres_admin_url: str, mariadb_admin_url: str = ""
    ) -> None:
        self.cleanup = cleanup
        self.root = Path(tempfile.mkdtemp(prefix="zendesk-audit-bench-"))
        cleanup.push(f"directory {self.root}", lambda: shutil.rmtree(self.root, True))
        self.pg_admin_url = make_url(postgres_admin_url)
        self.mariadb_admin_url = mariadb_admin_url
        self._pg_admin: sa.Engine | None = None
        self._drops: dict[str, Callable[[], None]] = {}

    def _admin(self) -> sa.Engine:
        if self._pg_admin is None:
            engine = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
            self._pg_admin = engine
            self.cleanup.push("the PostgreSQL admin engine", engine.dispose)
        return self._pg_admin

    def postgres_version(self) -> str:
        with self._admin().connect() as conn:
            return str(conn.execute(sa.text("SHOW server_version")).scalar())

    def create(self, kind: str) -> str:
        if kind == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="db-", dir=self.root))
            url = f"sqlite:///{directory / 'audit.db'}"
            self._drops[url] = self.cleanup.push(
                f"SQLite database {directory}", lambda: shutil.rmtree(directory, True)
            )
            return url
        if kind == "mariadb":
            return self._create_mariadb()
        if kind != "postgresql":
            raise ValueError(f"unsupported database kind {kind!r}")
        name = f"zendesk_audit_bench_{uuid.uuid4().hex[:12]}"
        admin = self._admin()

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

        url = self.pg_admin_url.set(database=name).render_as_string(hide_password=False)
        # Registered first: an interrupt right after CREATE must not leave it behind.
        self._drops[url] = self.cleanup.push(f"PostgreSQL database {name}", drop)
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        return url

    def _create_mariadb(self) -> str:
        name = f"zendesk_audit_bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.mariadb_admin_url, isolation_level="AUTOCOMMIT")
        self.cleanup.push("the MariaDB admin engine", admin.dispose)

        def drop() -> None:
            with admin.connect() as conn:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))

        url = make_url(self.mariadb_admin_url).set(database=name)
        self._drops[url.render_as_string(hide_password=False)] = self.cleanup.push(
            f"MariaDB database {name}", drop
        )
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        return url.render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        self._drops.pop(url)()

    def settle(self) -> None:
        """Before a measurement: what earlier runs wrote goes to disk, and PostgreSQL (once
        used) checkpoints it, so that no run pays for another's writes: a 100k load makes
        hundreds of MB of WAL, whose checkpoint would otherwise land in a later run."""
        os.sync()
        if self._pg_admin is not None:
            with self._pg_admin.connect() as conn:
                conn.execute(sa.text("CHECKPOINT"))

    def count_rows(self, url: str) -> int:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                query = sa.text("SELECT count(*) FROM zendesk_audit_logs WHERE account = :a")
                return int(conn.execute(query, {"a": ACCOUNT}).scalar_one())
        finally:
            engine.dispose()


def psycopg_conninfo(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string."""
    parsed: URL = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
