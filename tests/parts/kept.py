"""What the two servers' pools of kept test databases share (``db_pool``, ``mysql_pool``):
the names kept, taking one, waiting for a finished test's sessions, the drop at exit; and
the names themselves, which say which process owns a database, so that what a process
killed before its exit left is dropped at the next run's start (``own``, ``sweep``)."""

from __future__ import annotations

import atexit
import os
import re
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa

GRACE = 0.05  # seconds for a finished test's closed sessions to end on their own
ENDED = 5.0  # ... and for the ones ended after it to be gone


class KeptDatabases:
    """One process's kept databases: empty ones and ones at the template."""

    FORCE = ""  # what ``DROP DATABASE`` needs to end sessions left (PostgreSQL's WITH (FORCE))

    def __init__(self, admin: Callable[[], sa.Engine]) -> None:
        self._admin = admin
        self.empty: list[str] = []
        self.migrated: list[str] = []
        atexit.register(self._drop_all)

    def take_empty(self) -> str | None:
        return self.empty.pop() if self.empty else None

    @staticmethod
    def alone(others: Callable[[], bool], end_others: Callable[[], object]) -> bool:
        """Nobody else connected: the test's closed sessions get ``GRACE`` to end, and any
        left (an engine a test never disposed) are ended, as the drop ended them."""
        if _until_gone(others, GRACE):
            return True
        end_others()
        return _until_gone(others, ENDED)

    def _drop_all(self) -> None:
        # each on its own: a failure (the server gone first) leaves the rest to be tried
        for name in self.empty + self.migrated:
            try:
                with self._admin().connect() as conn:
                    conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{self.FORCE}"))
            except sa.exc.DBAPIError:
                pass


def _until_gone(others: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while others():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# -- owners: what a process killed before its exit left ------------------------------------------
#
# Every test database and template is named ``etl_test_OWNER_X`` or ``etl_tmpl_OWNER_X``,
# OWNER being its process's token, and the process holds a lock named by its token on the
# server (on a connection of its own, taken before its first database) for as long as it
# lives: PostgreSQL's advisory lock (``OWNERS``, the token), MariaDB's ``GET_LOCK``. A
# process killed (a worker's crash, a run interrupted) loses its lock with its connection,
# so ``sweep`` drops the databases of every token whose lock nobody holds, whoever's run
# they were, and never a live run's (other checkouts may share the server). Names of another
# form (before the owners) are left alone: nothing says whose they are.

OWNERS = 0x45544C54  # "ETLT": PostgreSQL's first lock key for the owners, the second the token
NAME = re.compile(r"etl_(?:test|tmpl)_([0-9a-f]{8})_[0-9a-f]{8}")
_owner: dict[int, str] = {}  # pid -> token: a forked child is not its parent's owner
_held: dict[tuple[int, str], sa.Connection] = {}  # (pid, kind) -> the lock's connection


def owner() -> str:
    """This process's token, the same for all its databases."""
    return _owner.setdefault(os.getpid(), uuid.uuid4().hex[:8])


def new_name(prefix: str = "etl_test") -> str:
    """A new database's name, owned by this process (``own`` before creating it)."""
    return f"{prefix}_{owner()}_{uuid.uuid4().hex[:8]}"


def _pg_key(token: str) -> int:
    return int(token, 16) % 2**31  # an int4, positive: pg_locks shows it as an oid


def _mysql_lock(token: str) -> str:
    return f"etl_test_owner_{token}"


def own(kind: str, admin: sa.Engine) -> None:
    """Hold this process's lock on the ``kind`` server until it exits (once a process)."""
    if (os.getpid(), kind) in _held:
        return
    conn = admin.connect()  # never returned: the lock lives as long as the connection
    if kind == "postgresql":
        conn.execute(sa.text(f"SELECT pg_advisory_lock({OWNERS}, {_pg_key(owner())})"))
    else:
        got = conn.execute(sa.text("SELECT GET_LOCK(:n, 0)"), {"n": _mysql_lock(owner())})
        assert got.scalar() == 1, "a new token's lock is free"
    _held[(os.getpid(), kind)] = conn


def _alive(conn: sa.Connection, kind: str, token: str) -> bool:
    if kind == "postgresql":  # pg_locks: every database's locks, whichever one the owner used
        held = (
            "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2 "
            "AND classid::text::bigint = :ns AND objid::text::bigint = :key"
        )
        found = conn.execute(sa.text(held), {"ns": OWNERS, "key": _pg_key(token)})
        return found.first() is not None
    free = conn.execute(sa.text("SELECT IS_FREE_LOCK(:n)"), {"n": _mysql_lock(token)})
    return free.scalar() != 1


def sweep(kind: str, admin: sa.Engine) -> list[str]:
    """Drop the test databases and templates whose owning process is gone; their names."""
    listing = {
        "postgresql": "SELECT datname FROM pg_database",
        "mysql": "SELECT schema_name FROM information_schema.schemata",
    }[kind]
    force = " WITH (FORCE)" if kind == "postgresql" else ""
    dropped = []
    with admin.connect() as conn:
        owners: dict[str, list[str]] = {}
        for name in conn.execute(sa.text(listing)).scalars().all():
            if (found := NAME.fullmatch(name)) and found[1] != owner():
                owners.setdefault(found[1], []).append(name)
        for token, names in sorted(owners.items()):
            if _alive(conn, kind, token):
                continue
            for name in sorted(names):
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}{force}"))
                dropped.append(name)
    return dropped
