"""A backfill's slices, pure: a ``Slice`` of the window, its ``Reader``s (upwards from its
read point, downwards from its end), what their committed pages prove (``State``), whether
that covers the slice, and the row a slice saves. ``etl.sync.plan`` decides over them; see
its docstring for the reading and proof rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from etl.sync.window import BOUND_SLACK

SMOOTHING = 0.3  # weight of the newest page in a reader's moving average
# A downward reader that stopped short (``Reader.handed_at``) is followed by another once
# the upward reader has read this many more pages: the gap was larger than it looked.
REPAIR_PAGES = 2
# ... unless the gap left between the two readers is shorter than this: both stand in the
# same few (burst) seconds, and the upward reader's next page, which it asks anyway, reads
# them; a follower would read the same records once more (a page for nothing).
REPAIR_SPAN = timedelta(seconds=4)


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
    # Its pages have shown the order asked for: a later (up) or earlier (down) second than
    # its first, or the query's end. Until then its frontier proves nothing: pages all of
    # one second look the same whichever way the server sorted (``proof``).
    ordered: bool = False
    # A downward reader that stopped short of the upward one (the gap looked like less than
    # a page): the upward reader's pages then. Estimates on bursty data can be far off, so
    # if the upward reader keeps reading, the slice is paired again from where this stopped.
    handed_at: int | None = None

    def density(self) -> float | None:
        """Pages per second of created_at near its frontier (None: no page with records)."""
        return None if self.spacing is None else 1.0 / max(self.spacing, 1.0)

    def hand_over(self) -> None:
        """This downward reader stops short, leaving the rest of the gap to the upward one."""
        up = self.slice.up
        self.handed_at = up.pages if up is not None else 0

    def proof(self) -> datetime | None:
        """Up: records before this are read; down: records after this are read."""
        if self.down and self.exhausted:
            return self.query_start
        return self.frontier if self.ordered or self.exhausted else None


@dataclass(frozen=True)
class Proof:
    """What one fetched page proves about its slice, for the writer."""

    down: bool
    value: datetime | None  # up: newest created_at; down: oldest (or the query's start)
    exhausted: bool  # the query ended with this page


@dataclass(eq=False)
class Slice:
    """A slice of the window: what is committed, and who reads it."""

    id: int | None  # in zendesk_audit_sync_slices; None when the plan is not persisted
    start: datetime
    end: datetime
    position: datetime | None = None  # committed: newest created_at of the upward pages
    done: bool = False  # committed: the slice is proven read
    low: datetime | None = None  # committed: oldest created_at of the downward pages
    # Fetch side (etl.sync.backfill guards these with its lock):
    up: Reader | None = None
    down: Reader | None = None
    fetched: bool = False  # its readers' pages cover it: nothing more to fetch
    prior: float | None = None  # the density of the slice it was cut from
    cut_after: int = 0  # its upward reader's pages when it was last cut

    def read_from(self) -> datetime:
        """Where reading (again) starts: the checkpoint's own second is read again."""
        if self.position is None:
            return self.start
        return max(self.start, self.position - BOUND_SLACK)

    def read_point(self) -> datetime:
        """Every record of the slice created before this is stored."""
        return read_point_of(self.start, self.position)

    def row_end(self, low: datetime | None = None) -> datetime:
        """The end its row keeps: above it, downward pages proved everything."""
        low = self.low if low is None else low
        return self.end if low is None else min(self.end, low + BOUND_SLACK)

    def density(self) -> float | None:
        """Pages per second of created_at in its unread gap (None: nothing read yet): the
        denser of what its readers see at either edge of the gap, or the density of the
        slice it was cut from. The denser, not the mean: on bursty data one edge may sit
        in a quiet stretch, and a gap taken for less than it is stops its readers early
        (a lone reader then reads it at one page per latency, the run's tail)."""
        seen = [d for r in (self.up, self.down) if r is not None and (d := r.density())]
        return max(seen) if seen else self.prior

    def gap(self) -> tuple[datetime, datetime]:
        """The unread part, as its readers have fetched it."""
        lo = self.up.frontier if self.up and self.up.frontier else self.read_from()
        hi = self.down.proof() if self.down and self.down.frontier else None
        hi = hi or (self.end if self.low is None else min(self.end, self.low))
        return lo, max(lo, hi)

    def pages_left(self) -> float:
        """Estimated pages in the unread gap (inf: being read, size not yet known)."""
        if self.fetched or self.done:
            return 0.0
        density = self.density()
        if density is None:
            return float("inf") if self.up is not None else 0.0
        lo, hi = self.gap()
        return density * (hi - lo).total_seconds()

    def running(self) -> bool:
        return not self.fetched and self.up is not None


# Slices' (position, low, done) as a set of pages would leave them, before it commits.
State = tuple[datetime | None, datetime | None, bool]
Progress = dict[Slice, State]


def stopped_short(s: Slice) -> bool:
    """Has ``s``'s downward reader stopped short while its upward one read on since, with
    more than a few seconds still between them?"""
    down, up = s.down, s.up
    if down is None or down.handed_at is None or up is None or up.exhausted:
        return False
    lo, hi = s.gap()
    return up.pages >= down.handed_at + REPAIR_PAGES and hi - lo >= REPAIR_SPAN


def covered(s: Slice, position: datetime | None, low: datetime | None) -> bool:
    """Do an upward proof to ``position`` and a downward one from ``low`` cover ``s``?"""
    if position is not None and position > s.end:
        return True
    if low is None:
        return False
    return low < s.start or (position is not None and position > low)


def saved(s: Slice, state: State) -> tuple[datetime | None, bool, datetime]:
    """A slice's row once ``state`` commits: (position, done, end)."""
    position, low, done = state
    if done:
        return s.end, True, s.end
    if position is not None:
        position = min(position, s.end)
    return position, False, s.row_end(low)


def read_point_of(start: datetime, position: datetime | None) -> datetime:
    """A slice from ``start`` committed up to ``position``: every record of it created
    before this is stored."""
    return start if position is None else max(start, position)
