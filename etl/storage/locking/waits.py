"""Bounded database waits: session timeouts, and statements cancelled after a signal.

Without a limit, a statement waits as long as another session holds the row or table
lock it needs (a ``SELECT ... FOR UPDATE`` left open in a console, a long DDL), and a
SIGTERM is acted on only once that session lets go. So:

- every session of the job gets lock and statement timeouts (``session_timeouts``):
  PostgreSQL ``lock_timeout`` and ``statement_timeout``; MariaDB/MySQL
  ``innodb_lock_wait_timeout``, ``lock_wait_timeout`` (table metadata locks) and, on
  MariaDB, ``max_statement_time``. A setting named in ``database.url`` (PostgreSQL
  ``options=-c lock_timeout=5s``, MySQL ``init_command=...``) is left as given.
  ``database_errors`` turns the timeout into one line naming what waited;
- after SIGTERM/SIGINT (``interrupt``), a watcher cancels every statement still running
  ``CANCEL_GRACE_S`` later (PostgreSQL cancel request, MySQL ``KILL QUERY``), and
  ``database_errors`` reports the cancelled statement as ``InterruptedRun``. SQLite's
  busy wait cannot be cancelled; ``busy_timeout`` bounds it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 30
STATEMENT_TIMEOUT_S = 600
# A statement still running this long after a signal is waiting on something: cancel it.
CANCEL_GRACE_S = 1.0
_WATCH_INTERVAL_S = 0.2

# Statements running now: id(DBAPI connection) -> (engine, DBAPI connection, started at,
# thread).
_running: dict[int, tuple[Engine, Any, float, int]] = {}
_running_mutex = threading.Lock()
_interrupted = threading.Event()
_watcher_started = threading.Lock()


def session_timeouts(engine: Engine, url: URL, also: Mapping[str, str] | None = None) -> None:
    """Set the lock and statement timeouts, and ``also``'s settings, on each new
    connection of ``engine``: in one statement, one round trip (a SET each, in a
    transaction each, cost PostgreSQL 7 round trips a connection)."""
    given = set(re.findall(r"[a-z_]+", " ".join(map(str, url.query.values())).lower()))
    backend = url.get_backend_name()
    if backend == "postgresql":
        settings = {
            "lock_timeout": f"'{LOCK_TIMEOUT_S}s'",
            "statement_timeout": f"'{STATEMENT_TIMEOUT_S}s'",
        }
    else:
        settings = {
            "innodb_lock_wait_timeout": str(LOCK_TIMEOUT_S),
            "lock_wait_timeout": str(LOCK_TIMEOUT_S),
        }
    wanted = {name: value for name, value in settings.items() if name not in given}
    wanted.update(also or {})
    mariadb_statement_time = backend != "postgresql" and "max_statement_time" not in given

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        if backend == "postgresql":
            _set_postgresql(dbapi_connection, wanted)
            return
        assignments = [f"{name} = {value}" for name, value in wanted.items()]
        if mariadb_statement_time and "mariadb" in dbapi_connection.get_server_info().lower():
            assignments.append(f"max_statement_time = {STATEMENT_TIMEOUT_S}")
        if assignments:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"SET SESSION {', '.join(assignments)}")
            finally:
                cursor.close()


def _set_postgresql(dbapi_connection: Any, settings: Mapping[str, str]) -> None:
    """The SETs as one simple-query message outside a transaction (psycopg sends a query
    without parameters so, and a SET made there lasts the session): no BEGIN, no COMMIT."""
    if not settings:
        return
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("; ".join(f"SET {name} = {value}" for name, value in settings.items()))
    finally:
        cursor.close()
        dbapi_connection.autocommit = autocommit


def track(engine: Engine) -> None:
    """Know which of ``engine``'s connections are running a statement, to cancel them."""

    @event.listens_for(engine, "before_cursor_execute")
    def _started(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        with _running_mutex:
            _running[id(dbapi)] = (engine, dbapi, time.monotonic(), threading.get_ident())

    @event.listens_for(engine, "after_cursor_execute")
    def _ended(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        _forget(conn.connection.dbapi_connection)

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        dbapi = getattr(context.connection, "connection", None)
        if dbapi is not None:
            _forget(getattr(dbapi, "dbapi_connection", None))


def _forget(dbapi: Any) -> None:
    with _running_mutex:
        _running.pop(id(dbapi), None)


def interrupt(*, at_once: bool = False) -> bool:
    """A signal asked the job to stop: from now on, cancel statements that run longer than
    ``CANCEL_GRACE_S`` (``at_once``: every running one now). Whether the calling thread
    (the signal handler's, the main one) is inside a statement."""
    _interrupted.set()
    if _watcher_started.acquire(blocking=False):
        threading.Thread(target=_watch, name="cancel-db-waits", daemon=True).start()
    me = threading.get_ident()
    with _running_mutex:
        mine = any(thread == me for *_, thread in _running.values())
        if at_once:  # the watcher sees them as due at once
            for key, (engine, dbapi, _, thread) in list(_running.items()):
                _running[key] = (engine, dbapi, time.monotonic() - CANCEL_GRACE_S, thread)
    return mine


def interrupted() -> bool:
    return _interrupted.is_set()


def reset() -> None:
    """The signal was dealt with (the CLI's command is over): cancel nothing more."""
    _interrupted.clear()


def _watch() -> None:
    cancelled: set[int] = set()
    while True:
        _interrupted.wait()
        now = time.monotonic()
        with _running_mutex:
            due = [
                (key, engine, dbapi)
                for key, (engine, dbapi, started, _) in _running.items()
                if now - started >= CANCEL_GRACE_S and key not in cancelled
            ]
        for key, engine, dbapi in due:
            cancelled.add(key)
            try:
                _cancel(engine, dbapi)
            except Exception as exc:  # best effort: the timeouts still bound the wait
                log.debug("could not cancel a database statement: %s", exc)
        with _running_mutex:
            cancelled &= set(_running)
        time.sleep(_WATCH_INTERVAL_S)


def _cancel(engine: Engine, dbapi: Any) -> None:
    name = engine.dialect.name
    if name == "postgresql":
        cancel = getattr(dbapi, "cancel_safe", None)  # psycopg >= 3.2: bounded, safe
        if cancel is not None:
            cancel(timeout=5.0)
        else:
            dbapi.cancel()
    elif name == "sqlite":
        dbapi.interrupt()
    else:
        # MySQL cancels a statement from another session, by the connection's id.
        thread_id = dbapi.thread_id()
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        killer = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
        try:
            with killer.cursor() as cursor:
                cursor.execute(f"KILL QUERY {int(thread_id)}")
        finally:
            killer.close()


def waited(exc: BaseException) -> str | None:
    """What a database error says the statement waited for too long, or None."""
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlstate", None)
    if code == "55P03":
        return f"waited over {LOCK_TIMEOUT_S} s (lock_timeout) for a lock another session holds"
    if code == "57014" and "statement timeout" in str(orig):
        return f"ran over {STATEMENT_TIMEOUT_S} s (statement_timeout)"
    args = getattr(orig, "args", ())
    number = args[0] if args and isinstance(args[0], int) else None
    if number == 1205:
        return (
            f"waited over {LOCK_TIMEOUT_S} s (innodb_lock_wait_timeout) for a row lock "
            "another session holds"
        )
    if number == 1969 or number == 3024:
        return f"ran over {STATEMENT_TIMEOUT_S} s (max_statement_time)"
    if "database is locked" in str(orig):
        return "waited over the busy timeout for another process's SQLite write lock"
    return None
