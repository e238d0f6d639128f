"""A backfill's plan: the slices that cover a window, who reads them, how far it is proven.

Pure: no threads, no database, no network. ``etl.sync.backfill`` runs fetchers and a writer
over it (and takes its lock around the fetch-side fields), and persists what it decides.

A window is a set of **slices** ``[start, end]`` that cover it without gaps (neighbours
overlap by ``BOUND_SLACK``: bounds may be exclusive). Each slice is read by up to two
**readers**: one upwards from its read point (``sort=created_at``), and, once a fetcher is
free, one downwards from its end (``sort=-created_at``). They meet somewhere in the middle,
at a point no one had to guess: so pairing a slice costs no request (its one partial page
is where the two meet, instead of at its end). Only with more fetchers than two per slice is
a slice cut in time, in the middle of its unread gap (or, when many fetchers are free at
once, as at the start of a run, in as many equal parts as they need, each of
``MIN_PART_PAGES`` or more); the top part takes the downward reader, and each side of a
cut gets a reader walking away from it as fetchers free up.

What is proven. An answer proves only what it covers in order, within its own window
(checked by ``etl.sync.pagecheck`` before a page gets here): an upward page proves every
record of the slice created before its newest one (``position``), a downward page every
record created after its oldest one (``low``); a query that ends (``has_more`` false)
proves its whole window. A slice is **done** when what its committed pages prove covers
it: decided from committed pages only, never from what a fetcher has merely seen. Its row
keeps ``position``, and ``end`` moves down to the proven suffix (``low`` + ``BOUND_SLACK``).

The plan's **contiguous read point** is the lowest read point of its unfinished slices
(every record created before it is stored), or the plan's end once every slice is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from etl.common.settings import AccountSettings
from etl.sync.slices import (  # re-exported: the backfill and the tests take them from here
    SMOOTHING,
    read_point_of,
    stopped_short,
)
from etl.sync.slices import (
    Progress as Progress,
)
from etl.sync.slices import (
    Proof as Proof,
)
from etl.sync.slices import (
    Reader as Reader,
)
from etl.sync.slices import (
    Slice as Slice,
)
from etl.sync.slices import (
    State as State,
)
from etl.sync.slices import (
    covered as covered,
)
from etl.sync.slices import (
    saved as saved,
)
from etl.sync.window import BOUND_SLACK, Window, reread_from

MIN_PAIR_PAGES = 2.0  # a downward reader joins a slice with about this many pages left
# A slice already read from both ends is cut with this many pages left (each cut adds a
# meeting, where a page is partly read twice: half a page on average)...
MIN_SPLIT_PAGES = 8.0
MIN_SPLIT_SPAN = timedelta(seconds=4)  # ... and this much unread time
# A split into more than two parts (at the start) makes parts of at least this many pages.
MIN_PART_PAGES = 2 * MIN_SPLIT_PAGES
SLICES_PER_WORKER = 4  # splits are bounded: at most this many slices per worker


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
        """The slice a resumed plan adds: the overlap before its old end re-read, as the
        run after a finished plan would, and on to ``window``'s end if that is later (the
        plan then ends there). Also when no time has passed: records that appeared late
        behind the old end would otherwise wait a run longer than without the kill."""
        end = max(window.end, self.end)
        start = max(reread_from(self.end, account), window.start)
        if start >= end:  # a window that starts past the plan's end: nothing to add
            return None
        self.end = end
        return start, end

    def finished(self) -> bool:
        return all(s.done for s in self.slices)

    def pages_left(self) -> float | None:
        """Estimated pages still to fetch; None while a slice left to read has no
        density yet (its span may be empty history or the densest part). For the
        progress bar."""
        total = 0.0
        for s in self.slices:
            if s.done or s.fetched:
                continue
            if s.density() is None:
                return None
            total += s.pages_left()
        return total

    # -- who reads what (fetch side) ------------------------------------------------------

    def unstarted(self) -> Slice | None:
        """The first slice (by start: the contiguous read point moves first) without an
        upward reader."""
        for s in self.slices:
            if not s.done and not s.fetched and s.up is None:
                return s
        return None

    def pair_candidate(self) -> Slice | None:
        """The slice read upwards only with the most pages left: a downward reader joins it,
        once the upward one has read a page there (a part cut from a busy slice may be a
        quiet stretch, read by one request: its own page, not the busy slice's, tells)."""
        lone = [s for s in self.slices if s.running() and s.down is None and s.up and s.up.pages]
        best = max(lone, key=Slice.pages_left, default=None)
        if best is not None and best.pages_left() >= MIN_PAIR_PAGES:
            return best
        # A slice whose downward reader stopped short and whose upward one still reads
        # pages: its estimate was wrong, and it alone would hold the run's end.
        again = [s for s in self.slices if s.running() and stopped_short(s)]
        return max(again, key=lambda s: s.up.pages if s.up else 0, default=None)

    def split_candidate(
        self, max_slices: int, readers: int = 1
    ) -> tuple[Slice, list[datetime]] | None:
        """The slice with the most pages left, and where to cut its unread gap, highest
        first: in equal parts, as many cuts as ``readers`` more readers need (each new
        slice brings two: upwards from its cut, downwards once paired), within
        ``max_slices``. Only once its upward reader has read a page since it began or was
        last cut (splits never outrun pages)."""
        room = max_slices - len(self.slices)
        if room <= 0:
            return None
        busy = [s for s in self.slices if s.running() and s.up and s.up.pages > s.cut_after]
        victim = max(busy, key=Slice.pages_left, default=None)
        if victim is None or victim.pages_left() < MIN_SPLIT_PAGES:
            return None
        lo, hi = victim.gap()
        if hi - lo < MIN_SPLIT_SPAN:
            return None
        # One cut halves the gap, as a split always did. More (a run that needs 40 readers
        # makes 20 slices at once, not in 5 rounds of page reads) only into parts of at
        # least MIN_PART_PAGES (a density is at most a page a second: they keep their time
        # too); in the last pages, where cuts add meetings, slices are halved one at a time.
        by_pages = victim.pages_left() / MIN_PART_PAGES
        cuts = int(max(1, min(room, -(-max(readers, 1) // 2), by_pages - 1)))
        step = (hi - lo) / (cuts + 1)
        middles = [(lo + step * i).replace(microsecond=0) for i in range(cuts, 0, -1)]
        return victim, middles

    def begin_up(self, s: Slice) -> Reader:
        s.up = Reader(s, False, s.read_from(), s.end)
        return s.up

    def begin_down(self, s: Slice, resume: bool = False) -> Reader:
        """Downwards from the end (or from where an earlier downward reader stopped) to
        just below the upward reader's frontier. ``resume``: the reader that stopped short
        goes on along its own cursor (the caller kept its query), so the follower's first
        page is the next one of that query, not its last second read again (a burst second
        holds up to three pages)."""
        lo, _ = s.gap()
        hi, old = s.row_end(), s.down
        if resume and old is not None and old.handed_at is not None:
            old.handed_at = None
            return old
        s.down = Reader(s, True, max(s.start, lo - BOUND_SLACK), hi)
        if old is not None and old.frontier is not None and old.ordered:
            # What the one before fetched (its pages are queued already) is not asked again,
            # and still proven: the new reader starts from its frontier and spacing. (Not
            # when its pages proved nothing: all of one second, they may have been the
            # bottom of its window, read oldest first.)
            s.down.query_end = min(hi, old.frontier + BOUND_SLACK)
            s.down.frontier, s.down.spacing = old.frontier, old.spacing
            s.down.first, s.down.ordered = old.first, True
        return s.down

    @staticmethod
    def cut(victim: Slice, middle: datetime) -> tuple[datetime, datetime] | None:
        """End ``victim`` at ``middle``: the bounds of the slice for the rest (None: its
        readers have passed the middle meanwhile)."""
        lo, hi = victim.gap()
        if victim.fetched or middle - BOUND_SLACK <= lo or middle >= hi:
            return None
        return middle - BOUND_SLACK, victim.row_end()

    def add_split(self, new: Slice, victim: Slice, middle: datetime) -> None:
        """``new``, the rest of ``victim`` (cut at ``middle``), joins the plan: it takes the
        victim's downward reader and what that proved, and its reading history."""
        new.end = victim.end
        victim.end = middle
        new.low, victim.low = victim.low, None
        if victim.down is not None:
            new.down, victim.down = victim.down, None
            new.down.slice = new
            if new.down.handed_at is not None:  # stopped short: counted from the new reader
                new.down.handed_at = 0
        new.prior = victim.density()
        victim.cut_after = victim.up.pages if victim.up is not None else 0
        self.slices.append(new)
        self.slices.sort(key=lambda s: s.start)  # stable: the victim stays first

    def took_page(
        self, reader: Reader, newest: datetime | None, oldest: datetime | None, has_more: bool
    ) -> tuple[Proof, bool]:
        """``reader`` fetched a page whose rows span ``oldest..newest``: what it proves,
        and whether the reader is finished (its query ended, or its slice is covered by
        what was fetched)."""
        reader.pages += 1
        value = oldest if reader.down else newest
        if reader.first is None:
            reader.first = newest if reader.down else oldest
        if value is not None:
            since = reader.frontier or reader.first or value
            moved = abs((value - since).total_seconds())
            reader.spacing = (
                moved
                if reader.spacing is None
                else reader.spacing + SMOOTHING * (moved - reader.spacing)
            )
        if value is not None and (
            reader.frontier is None
            or (value < reader.frontier if reader.down else value > reader.frontier)
        ):
            reader.frontier = value
        reader.exhausted = not has_more
        # A page all of one second looks the same newest or oldest first: a server that
        # ignored the sort (an upward query answered newest first, a downward one oldest
        # first) would have it prove the far side of the window read (issue 23).
        reader.ordered = reader.ordered or reader.frontier != reader.first
        s = reader.slice
        if not s.fetched:
            up, down = s.up, s.down
            s.fetched = (up is not None and up.exhausted) or covered(
                s,
                (up.proof() if up is not None else None) or s.position,
                down.proof() if down is not None else s.low,
            )
        # A query that ended has nothing more to give, whether or not it covered the slice.
        return self.final_proof(reader), s.fetched or reader.exhausted

    @staticmethod
    def final_proof(reader: Reader) -> Proof:
        """All that ``reader``'s pages prove, once they are committed: cumulative, so that
        a downward reader's last word counts for the slice it read last (a split may have
        handed it to a new slice after its earlier pages were queued)."""
        return Proof(reader.down, reader.proof(), reader.exhausted)

    # -- what is committed (writer side) ---------------------------------------------------

    def progress(self, pages: Iterable[tuple[Slice, Proof | None]], pending: Progress) -> Progress:
        """What committing ``pages`` (slice, proof) after ``pending`` changes."""
        touched: Progress = {}
        for s, proof in pages:
            position, low, done = touched.get(s) or pending.get(s, (s.position, s.low, s.done))
            if proof is None:
                continue
            if proof.down:
                if proof.value is not None and (low is None or proof.value < low):
                    low = proof.value
            elif proof.value is not None and (position is None or proof.value > position):
                position = proof.value
            # An upward query that ended read its window, which holds the slice (ends only
            # move down); a downward one proves down to its start, which covers() weighs.
            done = done or (proof.exhausted and not proof.down) or covered(s, position, low)
            touched[s] = (position, low, done)
        return touched

    def read_point(self, pending: Mapping[Slice, State]) -> datetime | None:
        """The contiguous read point once ``pending`` commits: every record created
        before it is stored (None: nothing can be said yet)."""
        lowest: datetime | None = None
        for s in self.slices:
            position, _, done = pending.get(s, (s.position, s.low, s.done))
            if done:
                continue
            point = read_point_of(s.start, position)
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
        for s, (position, low, done) in progress.items():
            s.position, s.low, s.done = position, low, done
