"""One run at a time per (database, account), and never blocked by a dead process.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection
  held for the run; advisory locks are per database.
- MySQL/MariaDB: ``GET_LOCK`` on a connection held for the run; names are
  server-wide, so the name includes the database.
- SQLite: ``flock`` on ``<database file>.<account>.lock`` (mode 0600) beside the
  database, deleted by its holder as it lets go (a killed run's stays until the next
  run's); an in-memory database needs no lock.

Session locks end with their connection and ``flock`` with its process, so a run
that is killed releases its lock: the next one is never blocked by a leftover.

A lock can also be lost while its run goes on (its session ended, its file deleted):
``HeldLock.check`` (``etl.storage.locking.guard``) asks whether it is still ours, and the
lock's session is kept from timing out.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.common.errors import DatabaseError, LockedError
from etl.storage.engine import database_errors, reason, sqlite_path
from etl.storage.locking.guard import Check, HeldLock
from etl.storage.schema.coltypes import MYSQL_DIALECTS

log = logging.getLogger(__name__)

LOCK_PREFIX = "zendesk-audit-etl:"
POLL_INTERVAL_S = 0.5
_MYSQL_NAME_MAX = 64
_SAFE_FILE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

# Seconds the server may leave the lock's idle session alone: a year (MariaDB's maximum).
_LOCK_SESSION_IDLE_S = 31_536_000

Release = Callable[[], None]
# One attempt to take the lock: how to release and check it, or None if another run has it.
Attempt = Callable[[], "tuple[Release, Check] | None"]


@contextmanager
def run_lock(
    engine: Engine,
    account: str,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    *,
    poll_interval: float = POLL_INTERVAL_S,
    namespace: str = "account",
) -> Iterator[HeldLock]:
    """Hold ``account``'s run lock for the ``with`` block (``namespace="export"``: the
    export consumer named ``account``'s).

    If another run holds it, try again every ``poll_interval`` seconds until ``wait``
    seconds have passed, then raise ``LockedError``.
    """
    attempt = _attempt_for(engine, lock_subject(namespace, account))
    deadline = clock() + wait
    told = False
    while (taken := attempt()) is None:
        remaining = deadline - clock()
        if remaining <= 0:
            if wait > 0:  # --wait given and spent: advising it again would repeat the wait
                why = f"lock still held after waiting {wait:g} s); retry later"
            else:
                why = "lock held); retry later or pass --wait SECONDS"
            raise LockedError(f"another run for account {account} is in progress ({why}")
        if not told:  # say why nothing happens for a while
            log.info("account %s: another run holds the lock; waiting up to %g s", account, wait)
            told = True
        sleep(min(poll_interval, remaining))
    release, check = taken
    try:
        yield HeldLock(account, check)
    finally:
        release()


_NAMESPACES = ("account:", "export:")


def lock_subject(namespace: str, name: str) -> str:
    """What the lock is named after; one subject per (namespace, name), never shared.

    An account keeps its name (the lock a running older version takes); an export
    consumer is ``export:NAME``; an account whose name starts with ``account:`` or
    ``export:`` gets ``account:`` in front, so the account ``export:siem`` and the
    consumer ``siem`` no longer take one lock."""
    if namespace == "export":
        return f"export:{name}"
    if namespace != "account":
        raise ValueError(f"unknown lock namespace {namespace!r}")
    return f"account:{name}" if name.startswith(_NAMESPACES) else name


def advisory_key(account: str) -> int:
    """PostgreSQL's lock key: a stable signed 64-bit hash of the account."""
    digest = hashlib.sha256((LOCK_PREFIX + account).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def mysql_lock_name(database: str, account: str) -> str:
    """At most 64 characters; readable when short enough, hashed otherwise."""
    name = f"{LOCK_PREFIX}{database}:{account}"
    if len(name.encode()) <= _MYSQL_NAME_MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()
    return LOCK_PREFIX + digest[: _MYSQL_NAME_MAX - len(LOCK_PREFIX)]


def lock_file(database: Path, account: str) -> Path:
    """Beside the database's real file: a symlink or a second spelling of its path
    (``./a.db``, ``../x/a.db``) must take the same lock."""
    database = database.resolve()
    part = account if _SAFE_FILE_PART.fullmatch(account) else _short_hash(account)
    return database.with_name(f"{database.name}.{part}.lock")


def _short_hash(account: str) -> str:
    return hashlib.sha256(account.encode()).hexdigest()[:16]


def _attempt_for(engine: Engine, account: str) -> Attempt:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        key = advisory_key(account)
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
        # pg_locks shows a bigint key as two oids (high, low 32 bits) with objsubid 1.
        held = sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND objsubid = 1 "
            "AND classid = CAST(:high AS oid) AND objid = CAST(:low AS oid)"
        ).bindparams(high=unsigned >> 32, low=unsigned & 0xFFFF_FFFF)
        lock = "pg_try_advisory_lock(:key)"
        return lambda: _session_lock(
            engine,
            # The lock's session is idle between checks: never end it for that. In one
            # round trip with the lock: CASE sets the timeout first, so where the setting is
            # unknown (before PostgreSQL 14, which ends no idle session) the statement
            # fails having taken nothing, and the lock alone is tried.
            (
                sa.text(
                    "SELECT CASE WHEN set_config('idle_session_timeout', '0', false) "
                    f"IS NOT NULL THEN {lock} END"
                ).bindparams(key=key),
                sa.text(f"SELECT {lock}").bindparams(key=key),
            ),
            sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=key),
            held,
        )
    if dialect in MYSQL_DIALECTS:
        name = mysql_lock_name(engine.url.database or "", account)
        return lambda: _session_lock(
            engine,
            (sa.text("SELECT GET_LOCK(:name, 0)").bindparams(name=name),),
            sa.text("SELECT RELEASE_LOCK(:name)").bindparams(name=name),
            sa.text("SELECT IS_USED_LOCK(:name) = CONNECTION_ID()").bindparams(name=name),
            # wait_timeout (8 h by default) would end the idle lock session mid-backfill.
            sa.text(f"SET SESSION wait_timeout = {_LOCK_SESSION_IDLE_S}"),
        )
    if dialect == "sqlite":
        database = sqlite_path(engine.url)
        if database is None:
            return lambda: (_nothing_to_release, _still_held)
        path = lock_file(database, account)
        return lambda: _file_lock(path)
    raise ValueError(f"unsupported dialect {dialect!r}")


def _nothing_to_release() -> None:
    return None


def _still_held() -> str | None:
    return None


def _session_lock(
    engine: Engine,
    takes: tuple[sa.TextClause, ...],
    give_back: sa.TextClause,
    held: sa.TextClause,
    keep_alive: sa.TextClause | None = None,
) -> tuple[Release, Check] | None:
    """Take a session-level lock on a connection of its own, kept until release: by the
    first of ``takes`` the server accepts (a ``ProgrammingError`` tries the next)."""
    with database_errors(engine, "taking the run lock"):
        # Autocommit: the held connection must not sit "idle in transaction".
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            if keep_alive is not None:  # MySQL's: every version knows wait_timeout
                conn.execute(keep_alive)
            got = _first_accepted(conn, takes)
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
    if got != 1:  # PostgreSQL answers True, MySQL 1; NULL is an error: not ours
        conn.close()
        return None

    def check() -> str | None:
        try:
            still = conn.execute(held).scalar()
        except sa.exc.DBAPIError as exc:
            conn.invalidate()  # its session, and the lock with it, is gone
            return f"its database session ended: {reason(exc, engine.url)}"
        except sa.exc.SQLAlchemyError as exc:  # e.g. the connection was invalidated before
            return f"its database connection is closed: {type(exc).__name__}"
        return None if still else "the database no longer shows it as ours"

    def release() -> None:
        try:
            conn.execute(give_back)
        except sa.exc.DBAPIError as exc:
            # The connection is gone, and its session's locks with it; never pool it.
            log.warning("could not release the run lock cleanly: %s", type(exc.orig).__name__)
            conn.invalidate()
        except sa.exc.SQLAlchemyError:
            conn.invalidate()  # already known lost (``check``): its session is gone
        finally:
            conn.close()

    return release, check


def _first_accepted(conn: sa.Connection, takes: tuple[sa.TextClause, ...]) -> object:
    """The answer of the first of ``takes`` the server runs; a ``ProgrammingError`` (a
    setting an older server does not know) tries the next."""
    for take in takes[:-1]:
        try:
            return conn.execute(take).scalar()
        except sa.exc.ProgrammingError:
            pass
    return conn.execute(takes[-1]).scalar()


def _file_lock(path: Path) -> tuple[Release, Check] | None:
    """The holder deletes the file as it lets go, so lock files (one per account and per
    export consumer) do not pile up beside the database. A run that locked a file deleted
    under it (opened just before) finds the path gone or new, and locks the path again."""
    for _ in range(_FILE_LOCK_TRIES):
        fd = _open_lock_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise DatabaseError(f"cannot lock {path}: {exc.strerror}") from exc
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder deleted it on release: lock the one at the path now
    else:
        return None

    def release() -> None:
        if _same_file(fd, path):  # still ours: no other run can hold this path's file
            with suppress(OSError):
                path.unlink()
        os.close(fd)  # closing the only descriptor releases the flock

    def check() -> str | None:
        # Deleted or replaced, the file another run would lock is no longer ours.
        return None if _same_file(fd, path) else f"the lock file {path} was deleted or replaced"

    return release, check


# A lock file deleted between our open and our lock is opened again, this many times at most.
_FILE_LOCK_TRIES = 5


def _open_lock_file(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DatabaseError(f"cannot open the lock file {path}: {exc.strerror}") from exc


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False
