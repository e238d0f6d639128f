"""One run at a time per (database, account), and never blocked by a dead process.

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) on a connection
  held for the run; advisory locks are per database.
- MySQL/MariaDB: ``GET_LOCK`` on a connection held for the run; names are
  server-wide, so the name includes the database.
- SQLite: ``flock`` on ``<database file>.<account>.lock`` (mode 0600) beside the
  database; an in-memory database needs no lock.

Session locks end with their connection and ``flock`` with its process, so a run
that is killed releases its lock: the next one is never blocked by a leftover.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.db import database_errors, sqlite_path
from etl.errors import DatabaseError, LockedError
from etl.schema import MYSQL_DIALECTS

log = logging.getLogger(__name__)

LOCK_PREFIX = "zendesk-audit-etl:"
POLL_INTERVAL_S = 0.5
_MYSQL_NAME_MAX = 64
_SAFE_FILE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

Release = Callable[[], None]
# One attempt to take the lock: how to release it, or None if another holder has it.
Attempt = Callable[[], Release | None]


@contextmanager
def run_lock(
    engine: Engine,
    account: str,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    *,
    poll_interval: float = POLL_INTERVAL_S,
) -> Iterator[None]:
    """Hold ``account``'s run lock for the ``with`` block.

    If another run holds it, try again every ``poll_interval`` seconds until ``wait``
    seconds have passed, then raise ``LockedError``.
    """
    attempt = _attempt_for(engine, account)
    deadline = clock() + wait
    told = False
    while (release := attempt()) is None:
        remaining = deadline - clock()
        if remaining <= 0:
            raise LockedError(
                f"another run for account {account} is in progress (lock held); "
                "retry later or pass --wait SECONDS"
            )
        if not told:  # say why nothing happens for a while
            log.info("account %s: another run holds the lock; waiting up to %g s", account, wait)
            told = True
        sleep(min(poll_interval, remaining))
    try:
        yield
    finally:
        release()


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
    part = account if _SAFE_FILE_PART.fullmatch(account) else _short_hash(account)
    return database.with_name(f"{database.name}.{part}.lock")


def _short_hash(account: str) -> str:
    return hashlib.sha256(account.encode()).hexdigest()[:16]


def _attempt_for(engine: Engine, account: str) -> Attempt:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        key = advisory_key(account)
        return lambda: _session_lock(
            engine,
            sa.text("SELECT pg_try_advisory_lock(:key)").bindparams(key=key),
            sa.text("SELECT pg_advisory_unlock(:key)").bindparams(key=key),
        )
    if dialect in MYSQL_DIALECTS:
        name = mysql_lock_name(engine.url.database or "", account)
        return lambda: _session_lock(
            engine,
            sa.text("SELECT GET_LOCK(:name, 0)").bindparams(name=name),
            sa.text("SELECT RELEASE_LOCK(:name)").bindparams(name=name),
        )
    if dialect == "sqlite":
        database = sqlite_path(engine.url)
        if database is None:
            return lambda: _nothing_to_release
        path = lock_file(database, account)
        return lambda: _file_lock(path)
    raise ValueError(f"unsupported dialect {dialect!r}")


def _nothing_to_release() -> None:
    return None


def _session_lock(engine: Engine, take: sa.TextClause, give_back: sa.TextClause) -> Release | None:
    """Take a session-level lock on a connection of its own, kept until release."""
    with database_errors(engine, "taking the run lock"):
        # Autocommit: the held connection must not sit "idle in transaction".
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(take).scalar()
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
    if got != 1:  # PostgreSQL answers True, MySQL 1; NULL is an error: not ours
        conn.close()
        return None

    def release() -> None:
        try:
            conn.execute(give_back)
        except sa.exc.DBAPIError as exc:
            # The connection is gone, and its session's locks with it; never pool it.
            log.warning("could not release the run lock cleanly: %s", type(exc.orig).__name__)
            conn.invalidate()
        finally:
            conn.close()

    return release


def _file_lock(path: Path) -> Release | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise DatabaseError(f"cannot open the lock file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        raise DatabaseError(f"cannot lock {path}: {exc.strerror}") from exc

    def release() -> None:
        os.close(fd)  # closing the only descriptor releases the flock

    return release
