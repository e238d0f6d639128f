"""What a PostgreSQL run cost the server beyond its sessions: the WAL it wrote, the
checkpoints that started meanwhile, and its background processes' CPU (``PgServer``).

A first load of 100,000 records writes hundreds of MB of WAL; past about
``max_wal_size / (1 + checkpoint_completion_target)`` since the last checkpoint the server
starts one, whose full-page images (each page's first change after it is logged whole)
and writes land in that run alone. The bench's sessions' CPU does not see the checkpointer,
the WAL writer or the background writer: this does. Every figure is the server's as a
whole (``pg_current_wal_lsn``, ``pg_stat_bgwriter``, ``pg_stat_wal``): on a server shared
with other work it includes that work's share too.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from benchkit.measures import task_cpu

_STATE = """
SELECT pg_current_wal_lsn()::text,
       (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
       (SELECT buffers_backend FROM pg_stat_bgwriter),
       (SELECT wal_fpi FROM pg_stat_wal),
       (SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity
         WHERE backend_type IN ('checkpointer', 'walwriter', 'background writer'))
"""


@dataclass(frozen=True)
class ServerState:
    lsn: int  # bytes of WAL since the cluster began
    checkpoints: int  # started (timed or requested), as pg_stat_bgwriter counts them
    buffers_backend: int  # shared buffers the sessions had to write out themselves
    wal_fpi: int  # full-page images in the WAL (flushed to pg_stat_wal by each session)
    background_cpu: float  # the checkpointer's, WAL writer's and background writer's CPU s


@dataclass(frozen=True)
class ServerCost:
    wal_mb: float
    checkpoints: int
    buffers_backend: int
    wal_fpi: int
    background_cpu: float

    def text(self) -> str:
        return (
            f"WAL {self.wal_mb:.0f} MB ({self.wal_fpi} full-page images), "
            f"{self.checkpoints} checkpoint(s) started, {self.buffers_backend} buffers "
            f"written by sessions, background processes' CPU {self.background_cpu:.2f} s"
        )


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


class PgServer:
    """``before()`` just before a run and ``after()`` once it has ended."""

    def __init__(self, url: str) -> None:
        # no pooled connection left open during the run, where it would be one more session
        # of the database for the bench's sampler
        self._engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        self._start: ServerState | None = None

    def _state(self) -> ServerState:
        with self._engine.connect() as conn:
            lsn, checkpoints, backend, fpi, pids = conn.exec_driver_sql(_STATE).one()
        cpu = sum(used for used in (task_cpu(int(pid)) for pid in pids) if used is not None)
        return ServerState(_lsn(lsn), int(checkpoints), int(backend), int(fpi), cpu)

    def before(self) -> None:
        self._start = self._state()

    def after(self) -> ServerCost:
        assert self._start is not None
        start, end = self._start, self._state()
        self._engine.dispose()
        return ServerCost(
            wal_mb=(end.lsn - start.lsn) / 2**20,
            checkpoints=end.checkpoints - start.checkpoints,
            buffers_backend=end.buffers_backend - start.buffers_backend,
            wal_fpi=end.wal_fpi - start.wal_fpi,
            background_cpu=end.background_cpu - start.background_cpu,
        )
