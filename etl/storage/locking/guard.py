"""What a write transaction checks before it commits: that its run lock is still held, and
that its write epoch is still the current one.

A lock (``etl.storage.locking.lock``) can be lost while its run goes on: the server ends
the lock's session (``pg_terminate_backend``, ``idle_session_timeout``, MariaDB's ``KILL``
or ``wait_timeout``) or someone deletes the lock file. ``HeldLock.check`` asks whether the
lock is still ours, and ``Store`` calls it before every commit (``LockGuard``): a run that
lost its lock stops with ``LockLostError`` before writing again.

That check comes before the commit, not with it: a run could lose its lock between the
two. So the ``LockGuard`` also holds the write epoch taken with the lock
(``etl.storage.locking.fence``), checked inside each write transaction
(``guarded_transaction``): two runs never both commit to one account.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy.engine import Connection, Engine

from etl.common.errors import LockLostError
from etl.storage.engine import database_errors
from etl.storage.locking.fence import Fence

# Why the lock is no longer held, or None if it still is.
Check = Callable[[], str | None]


class HeldLock:
    """A run lock this process holds; ``check`` raises ``LockLostError`` once it is not."""

    def __init__(self, account: str, check: Check) -> None:
        self.account = account
        self._check = check
        self._mutex = threading.Lock()  # the lock's connection serves one thread at a time
        self._lost: str | None = None

    def check(self) -> None:
        with self._mutex:
            if self._lost is None:
                self._lost = self._check()
            lost = self._lost
        if lost is not None:
            raise LockLostError(
                f"lost the run lock of account {self.account} ({lost}); stopped before "
                "committing, so no other run is written over; the next run resumes from "
                "the last commit"
            )


class LockGuard:
    """The lock a ``Store``'s writes must still hold when they commit (one account at a
    time), and the write epoch taken with it; nothing to check when no lock is held
    (``migrate``, tests, ``status``)."""

    def __init__(self) -> None:
        self._held: tuple[HeldLock, Fence] | None = None

    @contextmanager
    def holding(
        self, lock: AbstractContextManager[HeldLock], take_fence: Callable[[], Fence]
    ) -> Iterator[HeldLock]:
        """Hold ``lock``, then take its epoch with ``take_fence``, for the ``with`` block."""
        with lock as held:
            previous, self._held = self._held, (held, take_fence())
            try:
                yield held
            finally:
                self._held = previous

    def check(self) -> None:
        """Cheap, before the commit: ``LockLostError`` if the lock is known lost."""
        held = self._held
        if held is not None:
            held[0].check()

    def fence(self, conn: Connection) -> None:
        """Inside the write transaction, its last statement: ``LockLostError`` (the
        transaction must roll back) if another run has taken the epoch since."""
        held = self._held
        if held is not None:
            held[1].check(conn)


@contextmanager
def guarded_transaction(
    engine: Engine, described: Engine, doing: str, guard: LockGuard | None = None
) -> Iterator[Connection]:
    """A transaction on ``engine`` whose database failures become ``DatabaseError``; with
    ``guard``, rolled back (``LockLostError``) if the run lock was lost before the commit,
    or its epoch taken by another run (checked inside the transaction, last)."""
    with database_errors(described, doing), engine.begin() as conn:
        try:
            yield conn
        except Exception:
            if guard is not None:  # another run's writes explain a failure ("no slice 7")
                guard.check()
            raise
        if guard is not None:
            guard.check()
            guard.fence(conn)
