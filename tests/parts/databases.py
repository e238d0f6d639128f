"""Test databases: a fresh one of each kind per test, and migrated ones copied from a template.

Server locations come from the environment so CI and laptops can differ:
``ETL_TEST_POSTGRES`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``)
and ``ETL_TEST_MYSQL`` (default ``mysql+pymysql://root@127.0.0.1:3306/test``).
``ETL_TEST_DATABASES`` narrows the kinds (for example ``sqlite,postgresql``).

Migrating takes about 0.1 s on SQLite, 0.5 s on PostgreSQL and 1 s on MariaDB, and most
tests want a migrated database, not a migration: each test process migrates one template
per kind, once, and ``migrate_from_template`` gives an empty database the same schema by
copying it (a file copy; ``CREATE DATABASE ... TEMPLATE``; each table's own
``SHOW CREATE TABLE`` on MariaDB, which has no templates). Tests of the migrations
themselves keep migrating for real.

On the servers, where a drop is slow (a checkpoint on PostgreSQL), a finished test's
database is emptied and kept for the process's next test when nothing but its rows changed
(``db_pool``, ``mysql_pool``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Generator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from etl.storage import migrate
from etl.storage.engine import open_engine

from .db_pool import PostgresPool
from .kept import new_name, own, sweep
from .mysql_pool import MariaDbPool

SERVER_URLS = {
    "postgresql": os.environ.get(
        "ETL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    ),
    "mysql": os.environ.get("ETL_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
ALL_KINDS = ("sqlite", "postgresql", "mysql")


def selected_kinds() -> list[str]:
    wanted = os.environ.get("ETL_TEST_DATABASES", ",".join(ALL_KINDS))
    return [kind for kind in ALL_KINDS if kind in {w.strip() for w in wanted.split(",")}]


def kind_of(url: str) -> str:
    """``sqlite``, ``postgresql`` or ``mysql`` (MariaDB speaks MySQL) for a URL."""
    backend = make_url(url).get_backend_name()
    return "mysql" if backend == "mariadb" else backend


_admins: dict[str, sa.Engine] = {}


def _admin(kind: str) -> sa.Engine:
    """The server's admin engine, one a process with its connections pooled: a new engine
    is a new connection and SQLAlchemy's first-connect queries, some 0.2 s under load on
    MariaDB, and each test's database needs it three times (create, copy, drop)."""
    if kind not in _admins:
        url = make_url(SERVER_URLS[kind])
        _admins[kind] = sa.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    return _admins[kind]


def server_admin(kind: str) -> sa.Engine:
    """This process's pooled admin engine on the ``kind`` server (for ``copies``)."""
    return _admin(kind)


def keep_empty(kind: str, name: str) -> None:
    """Hand the empty server database ``name`` to this process's kept ones (``copies``)."""
    pool = _pool(kind)
    assert pool is not None, kind
    pool.empty.append(name)


_pools: dict[str, PostgresPool | MariaDbPool] = {}


def _pool(kind: str) -> PostgresPool | MariaDbPool | None:
    """This process's kept server databases (``db_pool``, ``mysql_pool``); None for SQLite."""
    if kind not in SERVER_URLS:
        return None
    if kind not in _pools:
        admin = lambda: _admin(kind)  # noqa: E731
        _pools[kind] = (
            PostgresPool(SERVER_URLS[kind], admin) if kind == "postgresql" else MariaDbPool(admin)
        )
    return _pools[kind]


def _drop(admin: sa.Engine, kind: str, name: str) -> None:
    force = " WITH (FORCE)" if kind == "postgresql" else ""
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))


def _no_commit_flush(conn: sa.Connection, kind: str, name: str) -> None:
    """PostgreSQL: the test database's commits return without waiting for the WAL's flush
    to disk (``synchronous_commit = off``), most of a small commit's time. Only a crash of
    the server itself could lose them, which no test does; a killed client loses nothing
    committed, and every other session sees a commit at once as before. MariaDB has no
    such setting per database."""
    if kind == "postgresql":
        conn.execute(sa.text(f"ALTER DATABASE {name} SET synchronous_commit = off"))


def server_database(kind: str) -> Generator[str, None, None]:
    """Create a uniquely named database on the server, yield its URL, drop it.

    An unreachable server fails the test rather than skipping it, unless
    ``ETL_TEST_ALLOW_SKIP=1``: CI must never pass by testing nothing."""
    name = new_name()
    admin = _admin(kind)
    unreachable = ""
    pool = _pool(kind)
    kept = pool.take_empty() if pool is not None else None
    try:
        if kept is not None:
            name = kept
        else:
            own(kind, admin)  # before its first database: what it leaves if killed is swept
            with admin.connect() as conn:
                conn.execute(sa.text(f"CREATE DATABASE {name}"))
                _no_commit_flush(conn, kind, name)
    except sa.exc.OperationalError as exc:
        where = make_url(SERVER_URLS[kind]).render_as_string(hide_password=True)
        said = (str(exc.orig).strip().splitlines() or ["?"])[0]
        unreachable = f"{kind} server unreachable at {where} ({said})"
    if unreachable:  # outside the except: no chained driver traceback under the line
        if os.environ.get("ETL_TEST_ALLOW_SKIP") == "1":
            pytest.skip(unreachable)
        # One line per test: what is wrong and the two ways out.
        pytest.fail(
            f"{unreachable}: start it, or test SQLite alone with ETL_TEST_DATABASES=sqlite, "
            "or let these tests skip with ETL_TEST_ALLOW_SKIP=1",
            pytrace=False,
        )
    url = make_url(SERVER_URLS[kind]).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        _dispose_opened(url)
        if pool is None or not pool.keep(name):
            _drop(admin, kind, name)


def sweep_leftovers() -> list[str]:
    """Drop what processes killed before their exit left on the selected servers (a run
    interrupted, a worker crashed): ``kept.sweep``. Once a run, before its tests; a server
    that does not answer is left to the tests to report."""
    dropped = []
    for kind in selected_kinds():
        if kind in SERVER_URLS:
            with contextlib.suppress(sa.exc.OperationalError):
                dropped += sweep(kind, _admin(kind))
    return dropped


def make_database(kind: str, tmp_path: Path) -> Generator[str, None, None]:
    """A fresh, empty database of ``kind`` as a URL (a file in ``tmp_path`` for SQLite)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
        try:
            yield url
        finally:
            _dispose_opened(url)
    else:
        yield from server_database(kind)


# Engines a test's helpers opened on its database and leave to it (``support.fresh_store``'s
# store): disposed when the test is over, before its database is kept or dropped. Left
# open, their sessions were waited for (``kept.GRACE``) and then ended by the server.
_opened: dict[str, list[sa.Engine]] = {}


def opened(url: str, engine: sa.Engine) -> sa.Engine:
    """``engine``, on ``url``, to be disposed when the test whose database it is ends."""
    _opened.setdefault(url, []).append(engine)
    return engine


def _dispose_opened(url: str) -> None:
    for engine in _opened.pop(url, []):
        engine.dispose()


# -- migrated templates --------------------------------------------------------------------------

_templates: dict[str, str] = {}  # kind -> this process's migrated template (a path or a name)


def _template(kind: str) -> str:
    """This process's migrated template of ``kind``, made on first use, gone at exit."""
    if kind in _templates:
        return _templates[kind]
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="etl-template-")
        atexit.register(shutil.rmtree, folder, True)
        template = str(Path(folder) / "template.db")
        url = f"sqlite:///{template}"
    else:
        template = new_name("etl_tmpl")
        admin = _admin(kind)
        own(kind, admin)
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {template}"))
        atexit.register(_drop, admin, kind, template)
        url = make_url(SERVER_URLS[kind]).set(database=template).render_as_string(False)
    engine = open_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()  # PostgreSQL copies a template only while nobody is connected to it
    _templates[kind] = template
    return template


def _is_empty(url: URL) -> bool:
    if kind_of(url.render_as_string()) == "mysql":  # a schema the admin connection sees
        with _admin("mysql").connect() as conn:
            return not conn.execute(
                sa.text("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = :s"),
                {"s": url.database},
            ).scalar()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return not sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()


def migrate_from_template(url: str) -> bool:
    """Give the empty database at ``url`` the current schema by copying this process's
    template; False (nothing done) when it is not empty or is in use, so the caller
    migrates instead. For PostgreSQL the database is dropped and made again from the
    template, which is why nobody may be connected to it."""
    kind = kind_of(url)
    parsed = make_url(url)
    if kind == "sqlite":
        path = Path(parsed.database or "")
        if not parsed.database or (path.exists() and path.stat().st_size > 0):
            return False
        shutil.copyfile(_template(kind), path)
        return True
    if kind not in SERVER_URLS or not _is_empty(parsed):
        return False
    template, name = _template(kind), parsed.database
    admin = _admin(kind)
    pool = _pool(kind)
    assert pool is not None
    pool.learn_template(template)
    if pool.swap_in_migrated(str(name)):
        return True
    if kind == "postgresql":
        return _copy_postgresql(admin, template, str(name))
    _copy_mysql(admin, template, str(name))
    return True


def _copy_postgresql(admin: sa.Engine, template: str, name: str) -> bool:
    with admin.connect() as conn:
        try:
            conn.execute(sa.text(f"DROP DATABASE {name}"))
        except sa.exc.OperationalError:  # someone is connected to it: migrate it instead
            return False
        conn.execute(sa.text(f"CREATE DATABASE {name} TEMPLATE {template}"))
        _no_commit_flush(conn, "postgresql", name)  # a database's settings are not copied
    return True


_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")


# The template's tables as MariaDB states them, and which hold rows, read once a process:
# the template never changes, and each test's copy is then its CREATE TABLEs alone.
_mysql_tables: dict[str, list[tuple[str, str, bool]]] = {}


def _template_tables(conn: sa.Connection, template: str) -> list[tuple[str, str, bool]]:
    if template not in _mysql_tables:
        tables = conn.execute(
            sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
            {"s": template},
        ).scalars()
        found = []
        for table in list(tables):
            ddl = conn.execute(sa.text(f"SHOW CREATE TABLE {template}.{table}")).one()[1]
            rows = conn.execute(sa.text(f"SELECT 1 FROM {template}.{table} LIMIT 1")).first()
            found.append((table, _AUTO_INCREMENT.sub("", ddl).replace("%", "%%"), rows is not None))
        _mysql_tables[template] = found
    return _mysql_tables[template]


def _copy_mysql(admin: sa.Engine, template: str, name: str) -> None:
    """Each table as the template's own CREATE TABLE states it (foreign keys and all,
    which ``CREATE TABLE ... LIKE`` would leave out), then the template's rows."""
    with admin.connect() as conn:
        tables = _template_tables(conn, template)
        conn.execute(sa.text(f"USE {name}"))
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        try:
            for table, ddl, has_rows in tables:
                conn.exec_driver_sql(ddl)
                if has_rows:
                    conn.execute(sa.text(f"INSERT INTO {table} SELECT * FROM {template}.{table}"))
        finally:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
            # Back to the server's own database: a pooled connection left in this one
            # would look like a session left in it when the test is over (``mysql_pool``).
            conn.execute(sa.text(f"USE {make_url(SERVER_URLS['mysql']).database}"))


def skip_unless_mariadb(db_url: str, why: str) -> None:
    """Skip on a MySQL server (the ``mysql`` kind may be either): the subject is MariaDB's
    own reading."""
    engine = open_engine(db_url)
    with engine.connect():  # the dialect knows MariaDB once connected
        mariadb = bool(getattr(engine.dialect, "is_mariadb", False))
    engine.dispose()
    if not mariadb:
        pytest.skip(why)
