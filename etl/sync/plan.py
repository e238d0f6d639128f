"""A backfill's plan: the slices that cover a window, how they split, how far it is read.

Pure: no threads, no database, no network. ``etl.sync.backfill`` runs fetchers and a writer
over it (and takes its lock around the fetch-side fields), and persists what it decides.

A window is a set of **slices** ``[start, end]`` that cover it without gaps (neighbours
overlap by ``BOUND_SLACK``: bounds may be exclusive). A free fetcher takes the first
unstarted slice, else splits the slice with the most pages left (estimated from what its
pages have covered so far) at the middle of its unread part. Each slice's ``position`` is
the newest ``created_at`` committed in it; the plan's **contiguous read point** is the
lowest read point of its unfinished slices (every record created before it is stored),
or the plan's end once every slice is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from etl.common.settings import AccountSettings
from etl.sync.window import BOUND_SLACK, Window, reread_from

MIN_SPLIT_PAGES = 2.0  # split a slice only if about this many pages are left in it
MIN_SPLIT_SPAN = timedelta(seconds=4)  # ... and this much unread time


@dataclass(eq=False)
class Slice:
    """A slice of the window: what is committed, and what its fetcher has seen."""

    id: int | None  # in zendesk_audit_sync_slices; None when the plan is not persisted
    start: datetime
    end: datetime
    position: datetime | None = None  # newest created_at committed
    done: bool = False  # committed as read to its end
    # Fetch side (etl.sync.backfill guards these with its lock):
    running: bool = False
    fetched: bool = False  # its fetcher has read its last page
    frontier: datetime | None = None  # newest created_at fetched
    pages: int = 0  # pages fetched by the current fetcher
    density: float | None = None  # pages per second of created_at, once estimated

    def read_from(self) -> datetime:
        """Where reading (again) starts: the checkpoint's own second is read again."""
        if self.position is None:
            return self.start
        return max(self.start, self.position - BOUND_SLACK)

    def read_point(self) -> datetime:
        """Every record of the slice created before this is stored."""
        return _read_point(self.start, self.position)

    def pages_left(self) -> float:
        """Estimated pages between the frontier and the end (inf: not yet known)."""
        point = self.frontier or self.start
        span = max((self.end - point).total_seconds(), 0.0)
        if self.density is None:
            return float("inf") if self.running and self.pages == 0 else 0.0
        return self.density * span

    def begin(self) -> None:
        """A fetcher starts (again) on this slice."""
        self.running, self.fetched, self.pages, self.frontier = True, False, 0, None

    def took_page(
        self, newest: datetime | None, oldest: datetime | None, has_more: bool
    ) -> tuple[datetime | None, bool]:
        """Its fetcher read a page whose rows span ``oldest..newest``: the page's
        position within the slice, and whether the slice is now read to its end."""
        self.pages += 1
        if newest is not None and oldest is not None:
            if self.frontier is None or newest > self.frontier:
                self.frontier = newest
            # Density is uneven and recent pages predict the next ones best:
            # a moving average of pages per second of created_at.
            here = 1.0 / max((newest - oldest).total_seconds(), 1.0)
            before = self.density if self.pages > 1 else None
            self.density = here if before is None else (before + here) / 2
        # Past the end (a split moved it): the next slice reads on from there.
        last = not has_more or (self.frontier is not None and self.frontier > self.end)
        position = None if newest is None else min(newest, self.end)
        if last:
            self.fetched, self.running = True, False
        return position, last


# Slices' (position, done) as a set of pages would leave them, before it commits.
Progress = dict[Slice, tuple[datetime | None, bool]]


class Plan:
    """The slices covering ``start..end``, in order of start."""

    def __init__(self, slices: list[Slice], start: datetime, end: datetime) -> None:
        self.slices = slices
        self.start = start  # the window's start: a read point there says nothing yet
        self.end = end

    @classmethod
    def whole(cls, window: Window, slice_id: int | None = None) -> Plan:
        """A new plan: one slice, the whole window."""
        return cls([Slice(slice_id, window.start, window.end)], window.start, window.end)

    def tail(self, window: Window, account: AccountSettings) -> tuple[datetime, datetime] | None:
        """A resumed plan reads on to ``window``'s later end: the bounds of the slice to
        add, re-reading the overlap before the old end as the run after a finished plan
        would (None: the plan already reaches it). The plan then ends there."""
        if window.end <= self.end:
            return None
        start = max(reread_from(self.end, account), window.start)
        self.end = window.end
        return start, window.end

    def finished(self) -> bool:
        return all(s.done for s in self.slices)

    def pages_left(self) -> float | None:
        """Estimated pages still to fetch, each slice at its own density; None while a
        slice left to read has none yet (not begun, or no page with records yet): its
        span may be empty history or the densest part. For the progress bar."""
        total = 0.0
        for s in self.slices:
            if s.done or s.fetched:
                continue
            if s.density is None:
                return None
            point = s.frontier or s.read_from()
            total += s.density * max((s.end - point).total_seconds(), 0.0)
        return total

    def unstarted(self) -> Slice | None:
        for s in self.slices:  # by start: the contiguous read point moves first
            if not s.done and not s.running and not s.fetched:
                return s
        return None

    def split_candidate(self) -> tuple[Slice, datetime] | None:
        """The running slice with the most pages left, and the middle of its unread part."""
        busy = [s for s in self.slices if s.running and s.density is not None]
        if not busy:
            return None
        victim = max(busy, key=Slice.pages_left)
        if victim.pages_left() < MIN_SPLIT_PAGES:
            return None
        point = victim.frontier or victim.start
        span = victim.end - point
        if span < MIN_SPLIT_SPAN:
            return None
        middle = point + span / 2
        return victim, middle.replace(microsecond=0)

    @staticmethod
    def cut(victim: Slice, middle: datetime) -> tuple[datetime, datetime] | None:
        """End ``victim`` at ``middle``: the bounds of the slice for the rest (None: its
        fetcher has passed the middle meanwhile, or stopped)."""
        rest = (middle - BOUND_SLACK, victim.end)
        frontier = victim.frontier or victim.start
        if not victim.running or frontier >= rest[0]:
            return None
        victim.end = middle
        return rest

    def add_split(self, new: Slice, victim: Slice) -> None:
        """``new``, the rest of ``victim``, joins the plan with its density."""
        new.density = victim.density
        self.slices.append(new)
        self.slices.sort(key=lambda s: s.start)  # stable: the victim stays first

    def progress(
        self, pages: Iterable[tuple[Slice, datetime | None, bool]], pending: Progress
    ) -> Progress:
        """What committing ``pages`` (slice, position, last) after ``pending`` changes."""
        touched: Progress = {}
        for s, page_position, last in pages:
            position, done = touched.get(s) or pending.get(s, (s.position, s.done))
            if page_position is not None and (position is None or page_position > position):
                position = page_position
            touched[s] = (position, done or last)
        for s, (_, done) in touched.items():
            if done:  # read to its end: everything up to it is in
                touched[s] = (s.end, True)
        return touched

    def read_point(self, pending: Mapping[Slice, tuple[datetime | None, bool]]) -> datetime | None:
        """The contiguous read point once ``pending`` commits: every record created
        before it is stored (None: nothing can be said yet)."""
        lowest: datetime | None = None
        for s in self.slices:
            position, done = pending.get(s, (s.position, s.done))
            if done:
                continue
            point = _read_point(s.start, position)
            if lowest is None or point < lowest:
                lowest = point
        if lowest is None:
            return self.end
        return lowest if lowest > self.start else None

    def watermark(self, pending: Progress, before: datetime | None) -> datetime | None:
        """The account's watermark once ``pending`` commits, if it moves past ``before``."""
        point = self.read_point(pending)
        if point is not None and before is not None and point <= before:
            return None
        return point

    @staticmethod
    def commit(progress: Progress) -> None:
        """Take committed progress into the slices."""
        for s, (position, done) in progress.items():
            s.position, s.done = position, done


def _read_point(start: datetime, position: datetime | None) -> datetime:
    """A slice from ``start`` committed up to ``position``: every record of it created
    before this is stored."""
    return start if position is None else max(start, position)
