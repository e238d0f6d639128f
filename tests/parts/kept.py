"""What the two servers' pools of kept test databases share (``db_pool``, ``mysql_pool``):
the names kept, taking one, waiting for a finished test's sessions, the drop at exit."""

from __future__ import annotations

import atexit
import time
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
