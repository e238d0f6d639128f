"""Open the database: which dialects, which drivers, SQLite's settings and file mode.

Plain URLs work: ``postgresql://`` uses psycopg 3 and ``mysql://``/``mariadb://`` use
PyMySQL. Database failures become ``DatabaseError`` with one line that names the
server (never the password) and what to check; see ``database_errors``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from etl.common.errors import ConfigError, DatabaseError, InterruptedRun, SchemaError
from etl.storage.drivers.options import check_options, refused_option
from etl.storage.drivers.pymysql_start import quick_preferred_tls
from etl.storage.locking import sessions
from etl.storage.locking import waits as dbwait

# Backend name in the URL -> driver used when the URL names none.
DEFAULT_DRIVERS: dict[str, str] = {
    "postgresql": "psycopg",
    "mysql": "pymysql",
    "mariadb": "pymysql",
}
# Backend -> the package extra that installs its default driver.
EXTRAS: dict[str, str] = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}
DEFAULT_PORTS: dict[str, int] = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10

# Execution option: on SQLite, open transactions with BEGIN IMMEDIATE (take the write
# lock up front, so a read-then-write transaction never fails on a stale snapshot).
SQLITE_IMMEDIATE = "etl_sqlite_immediate"

# JSON columns' text, as records.py makes it for the fast paths: compact, non-ASCII as UTF-8.
json_text = functools.partial(json.dumps, separators=(",", ":"), ensure_ascii=False)


def parse_url(url: str) -> URL:
    """The URL with its default driver filled in; ``ConfigError`` for anything unsupported."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ConfigError(
            "database url is not a valid URL; expected for example sqlite:///path/audit.db, "
            "postgresql://user@host/dbname or mysql://user@host/dbname"
        ) from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":  # the spelling of Heroku and libpq-style URLs
        backend = "postgresql"
    if backend not in ("sqlite", *DEFAULT_DRIVERS):
        raise ConfigError(
            f"unsupported database {backend!r} in database url; "
            "use sqlite, postgresql, mysql or mariadb"
        )
    if backend == "sqlite" and driver not in ("", "pysqlite"):
        raise ConfigError(f"unsupported SQLite driver {driver!r}; use a plain sqlite:/// url")
    if backend == "sqlite" and parsed.host:
        # sqlite://audit.db reads "audit.db" as a server's name: a common slip
        named = f"{parsed.host}/{parsed.database}" if parsed.database else parsed.host
        raise ConfigError(
            f"database url sqlite://{named} has two slashes; a SQLite file takes three: "
            f"sqlite:///{named} (relative to the working directory), or four for an absolute "
            "path: sqlite:////var/lib/zendesk-audit-etl/audit.db"
        )
    if not driver and backend in DEFAULT_DRIVERS:
        driver = DEFAULT_DRIVERS[backend]
    return parsed.set(drivername=f"{backend}+{driver}" if driver else backend)


def describe(url: URL) -> str:
    """Where the database is, for messages: never the password."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(url)
        return f"SQLite database {path}" if path else "in-memory SQLite database"
    port = url.port or DEFAULT_PORTS.get(backend, 0)
    user = f" as user {url.username}" if url.username else ""
    return f"{backend} server {url.host or 'localhost'}:{port}/{url.database or ''}{user}"


def sqlite_path(url: URL) -> Path | None:
    """The SQLite database file, or None for an in-memory database."""
    database = url.database
    if not database or database == ":memory:" or "mode=memory" in database:
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].partition("?")[0]
    return Path(database)


def open_engine(url: str, *, create: bool = True) -> Engine:
    """An engine for ``url``; nothing is connected yet (see ``check_connection``).

    ``create=False`` (the commands that only look): a SQLite file that does not exist is
    a ``SchemaError`` rather than an empty file made by looking."""
    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {"json_serializer": json_text}
    if backend == "sqlite":
        path = sqlite_path(parsed)
        if path is not None and create:
            _create_private_file(path)
        elif path is not None and not path.exists():
            raise SchemaError(f"there is no SQLite database at {path} yet")
    elif backend == "postgresql":
        if parsed.get_driver_name() in ("psycopg", "psycopg2"):
            kwargs["use_native_hstore"] = False  # no hstore column: spare its type look-up
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        if "application_name" not in parsed.query:
            connect_args["application_name"] = "zendesk-audit-etl"
        kwargs["connect_args"] = connect_args
    else:
        kwargs["pool_recycle"] = 3600
        if parsed.get_driver_name() == "pymysql":
            kwargs["pool_reset_on_return"] = None  # sessions.reset_open_transactions
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        if "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        check_options(parsed)  # a mistake in the URL's options is the config's (exit 2)
        engine = sa.create_engine(parsed, **kwargs)
    except ImportError:
        driver = parsed.get_driver_name()
        if driver == DEFAULT_DRIVERS.get(backend):
            # the package is not on PyPI: the extra is installed from a checkout or wheel
            extra = EXTRAS[backend]
            how = f"pip install '.[{extra}]' in a checkout (the [{extra}] extra)"
        else:
            how = f"pip install {driver}"
        raise ConfigError(f"the {backend} driver {driver} is not installed; run: {how}") from None
    except sa.exc.NoSuchModuleError:
        raise ConfigError(
            f"unknown {backend} driver {parsed.get_driver_name()!r} in database url"
        ) from None
    if parsed.get_driver_name() == "pymysql":
        _check_pymysql_charset(parsed)
        quick_preferred_tls(engine)
    if backend == "sqlite":
        # sqlite3's own ``?timeout=SECONDS`` in the URL replaces our busy timeout.
        _configure_sqlite(engine, busy_timeout="timeout" not in parsed.query)
    else:
        # psycopg prepares a statement after a few runs and the server may then keep one
        # generic plan. A plan made while the table was nearly empty (the start of a
        # backfill) stays in use as the table grows to millions of rows: plan per query.
        plans = {"plan_cache_mode": "force_custom_plan"}
        # verify reads a MariaDB page as one GROUP_CONCAT value (etl.integrity.pages): as
        # long as a packet may be, in the connection's one SET, not a statement a page.
        concat = {"group_concat_max_len": "@@max_allowed_packet"}
        dbwait.session_timeouts(engine, parsed, also=plans if backend == "postgresql" else concat)
        sessions.ping_when_idle(engine)
        if parsed.get_driver_name() == "pymysql":
            sessions.reset_open_transactions(engine)
    dbwait.track(engine)
    return engine


def _check_pymysql_charset(url: URL) -> None:
    """PyMySQL fails on an unknown charset with an AttributeError at connect: say so first."""
    from pymysql.charset import charset_by_name

    charset = url.query.get("charset")
    if isinstance(charset, str) and charset_by_name(charset) is None:
        raise ConfigError(
            f"unknown MySQL charset {charset!r} in database url; leave it out (utf8mb4 is used)"
        )


def _create_private_file(path: Path) -> None:
    """Create the database file readable by its owner only; leave an existing file alone."""
    if path.exists():
        return
    if not path.parent.is_dir():
        raise ConfigError(
            f"the directory {path.parent} of the SQLite database does not exist; create it"
        )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise DatabaseError(f"cannot create the SQLite database {path}: {exc.strerror}") from exc
    os.close(fd)


def _configure_sqlite(engine: Engine, *, busy_timeout: bool) -> None:
    # SQLAlchemy's documented recipe: take transaction control from the sqlite3 module
    # (which does not BEGIN before a SELECT) and emit BEGIN ourselves.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if busy_timeout:
                cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(SQLITE_IMMEDIATE)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def for_writing(engine: Engine) -> Engine:
    """The same engine, whose transactions take SQLite's write lock when they begin."""
    return engine.execution_options(**{SQLITE_IMMEDIATE: True})


def check_connection(engine: Engine, probe: Callable[[Connection], T] | None = None) -> T | None:
    """Connect once; ``DatabaseError`` saying where and what to check if that fails.

    ``probe`` (e.g. the schema version's read) runs on that connection instead of a bare
    ``SELECT 1``, so that a run with nothing new pays one statement for both; if it fails
    (its table not made yet), ``SELECT 1`` tells a bad connection from a missing table,
    and the answer is None."""
    try:
        with engine.connect() as conn:
            if probe is not None:
                if engine.dialect.name == "postgresql":
                    # A read needs no transaction: psycopg's BEGIN and the ROLLBACK as the
                    # connection goes back to the pool were 2 of a run's round trips.
                    conn.execution_options(isolation_level="AUTOCOMMIT")
                try:
                    return probe(conn)
                except sa.exc.DBAPIError:  # judged by SELECT 1, below
                    conn.rollback()
            conn.exec_driver_sql("SELECT 1")
            return None
    except (sa.exc.DBAPIError, sa.exc.DisconnectionError, sa.exc.TimeoutError) as exc:
        refused = refused_option(exc, engine.url.password)
        if refused is not None:  # an option of the URL, not the server: the config's
            raise refused from None
        if engine.dialect.name == "sqlite":
            what = "check the path in database.url and the file's permissions"
        else:
            what = (
                "check that the server is running and reachable, and the user, password "
                "and database name in database.url"
            )
        raise DatabaseError(
            f"cannot connect to the {describe(engine.url)}: {reason(exc, engine.url)}; {what}"
        ) from exc


@contextmanager
def database_errors(engine: Engine, doing: str) -> Iterator[None]:
    """Turn driver and pool failures into ``DatabaseError``: one line, no SQL, no password."""
    try:
        yield
    except (sa.exc.DBAPIError, sa.exc.DisconnectionError, sa.exc.TimeoutError) as exc:
        if dbwait.interrupted():  # a signal's cancel, or what followed it
            raise InterruptedRun(f"stopped by a signal while {doing}") from exc
        waited = dbwait.waited(exc)
        if waited:
            raise DatabaseError(
                f"{doing} {waited} ({describe(engine.url)}); find the session that holds it "
                "(PostgreSQL pg_stat_activity, MariaDB SHOW PROCESSLIST) or raise the timeout"
            ) from exc
        raise DatabaseError(
            f"database error while {doing} ({describe(engine.url)}): {reason(exc, engine.url)}"
        ) from exc


def reason(exc: BaseException, url: URL | None = None) -> str:
    """The driver's own message, first line only, without the password, bounded."""
    orig = getattr(exc, "orig", None)
    source = orig if isinstance(orig, BaseException) else exc
    lines = [line.strip() for line in str(source).splitlines() if line.strip()]
    text = lines[0] if lines else type(source).__name__
    if isinstance(source, sa.exc.SQLAlchemyError):
        text = text.split(" [SQL:")[0]
    password = url.password if url is not None else None
    if password:
        text = text.replace(str(password), "***")
    return text[:300]
