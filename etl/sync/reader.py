"""One fetcher's walk through a backfill slice, and what a page of it proves.

Pure, like ``etl.sync.plan`` (which owns the slices and decides with these); the backfill
takes its lock around every change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etl.sync.plan import Slice

SMOOTHING = 0.3  # weight of the newest page in a reader's moving average


@dataclass(eq=False)
class Reader:
    """One fetcher's walk through a slice, upwards or downwards, in one query."""

    slice: Slice
    down: bool
    query_start: datetime
    query_end: datetime
    frontier: datetime | None = None  # newest (up) or oldest (down) created_at fetched
    first: datetime | None = None  # the first created_at it fetched
    # Seconds of created_at a page moves the frontier, a moving average over its pages:
    # seconds per page, not pages per second, so that a page inside one busy second (0 s)
    # only lowers the average a little instead of making every later second look as dense.
    spacing: float | None = None
    pages: int = 0
    exhausted: bool = False  # its query has no more pages: its whole window is read

    def density(self) -> float | None:
        """Pages per second of created_at near its frontier (None: no page with records)."""
        return None if self.spacing is None else 1.0 / max(self.spacing, 1.0)

    def proof(self) -> datetime | None:
        """Up: records before this are read; down: records after this are read."""
        if self.down and self.exhausted:
            return self.query_start
        return self.frontier


@dataclass(frozen=True)
class Proof:
    """What one fetched page proves about its slice, for the writer."""

    down: bool
    value: datetime | None  # up: newest created_at; down: oldest (or the query's start)
    exhausted: bool  # the query ended with this page
