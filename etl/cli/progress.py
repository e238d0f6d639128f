"""A one-line progress bar for long runs, drawn only on a terminal.

The share is of **records**, not of time: Zendesk gives no total, so what is left is
estimated. Read in order, it is the records per second of ``created_at`` this run has
been reading lately (its density) times the span still unread, which starts where the
data does, not at the window's start: a first run's window begins in 2007, but its
first page tells where the records begin. A parallel backfill gives its own estimate
instead (``etl.sync.plan.Plan.pages_left``: each slice's unread span at the density of its
own pages, so an empty stretch of history costs nothing), and "?" until every slice
left to read has one. Records stored before the run (a resumed sync's) count as done,
so a run resumed at 85% starts at 85%.

Density and rate are sums of this run's increments that decay with time (``*_TAU``):
recent pages predict the next ones best, and one slow or bursty page moves neither
much; the estimate counts down between readings and moves part of the way to each new
one, so the share and the estimate settle. The first line shows "?" until a second
one has a measure. The line is cut to the terminal's width so a redraw never wraps,
and ends clearing what a longer earlier line left. A stream that is not a terminal
(cron's mail, journald, a pipe) gets nothing.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from etl.cli.terminal import char_width

BAR_WIDTH = 20
MIN_INTERVAL = 0.5  # seconds between redraws (each may read the slices once)
# Seconds over which each measure forgets (e-folding): the density follows the data's
# recent pages closely, the rate more slowly (it swings with every burst of commits),
# and the estimate counts down smoothly between readings.
DENSITY_TAU = 10.0
RATE_TAU = 30.0
ESTIMATE_TAU = 10.0
CLEAR_TO_END = "\x1b[K"


@dataclass(frozen=True)
class Reading:
    """Where a run stands: its records, and the ``created_at`` span read and left."""

    records: int  # this run's, as received
    read: float  # seconds of created_at read so far (only increments are used)
    unread: float  # seconds of created_at left to read
    stored: int = 0  # records stored before this run that are part of the work
    # Records left, when the caller knows better than this run's density times
    # ``unread`` (a parallel backfill: each slice at its own density); with
    # ``by_density`` false, None means it cannot tell yet.
    left: float | None = None
    by_density: bool = True


@dataclass(frozen=True)
class Estimate:
    """How far a load is and how long it has left, as far as can be told yet."""

    share: float | None  # of the records; None: not measurable yet
    rate: float | None  # records per second
    left: float | None  # seconds


DEFAULT_WIDTH = 80


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` writes to (asked at every redraw: it may be
    resized); ``$COLUMNS`` or 80 when it cannot say, or says 0."""
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or no file descriptor
        columns = 0
    if columns > 0:
        return columns
    # not a terminal, or a pseudo-terminal nobody sized (serial consoles, some containers):
    # $COLUMNS, else standard output's width, else the default; each only when above 0
    return shutil.get_terminal_size(fallback=(DEFAULT_WIDTH, 24)).columns


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (OSError, ValueError, AttributeError):  # closed, or not a real stream
        return False


def seconds(start: datetime | None, end: datetime | None) -> float:
    """``end - start`` in seconds, never negative (0 when either is unknown)."""
    if start is None or end is None:
        return 0.0
    return max((end - start).total_seconds(), 0.0)


class Estimator:
    """Share, rate and time left from a sequence of readings (see the module doc)."""

    def __init__(self) -> None:
        self._last: tuple[float, Reading] | None = None
        self._records = self._read = 0.0  # decayed sums of increments: the density
        self._counted = self._elapsed = 0.0  # ... and the rate
        self._left: float | None = None  # the smoothed estimate, seconds
        self._share = 0.0  # the highest share shown: a denser stretch never takes it back

    def add(self, now: float, reading: Reading) -> Estimate:
        elapsed = 0.0
        if self._last is not None:
            then, before = self._last
            elapsed = max(now - then, 0.0)
            records = max(reading.records - before.records, 0)
            keep = math.exp(-elapsed / DENSITY_TAU)
            self._records = keep * self._records + records
            self._read = keep * self._read + max(reading.read - before.read, 0.0)
            keep = math.exp(-elapsed / RATE_TAU)
            self._counted = keep * self._counted + records
            self._elapsed = keep * self._elapsed + elapsed
        self._last = (now, reading)
        rate = self._counted / self._elapsed if self._elapsed > 0 else None
        if reading.left is not None:
            left = reading.left
        elif reading.by_density and self._read > 0:
            left = self._records / self._read * reading.unread
        else:  # no density yet (nothing read since the first reading), or not known
            self._left = None
            return Estimate(None, rate, None)
        done = reading.stored + reading.records
        share = done / (done + left) if done + left > 0 else 1.0
        # A newly dense stretch raises what is left, not what is done: the bar holds its
        # place (a share going backwards reads as lost work) and the time left says more.
        self._share = share = max(share, self._share)
        return Estimate(share, rate, self._smooth(left / rate if rate else None, elapsed))

    def _smooth(self, left: float | None, elapsed: float) -> float | None:
        """The estimate counts down between readings, and moves a share of the way to
        each new one."""
        if left is None or self._left is None:
            self._left = left
        else:
            keep = math.exp(-elapsed / ESTIMATE_TAU)
            self._left = keep * max(self._left - elapsed, 0.0) + (1 - keep) * left
        return self._left


class ProgressBar:
    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_pages: int = 3,
        width: Callable[[], int] | None = None,
    ) -> None:
        self.stream = stream
        self.live = is_terminal(stream)  # never a line in cron mail, journald or a pipe
        self.clock = clock
        self.min_pages = min_pages  # short runs (the usual incremental one) draw nothing
        self.width = width or (lambda: terminal_width(stream))
        self.drawn = False
        self._last_draw = -math.inf
        self._estimator = Estimator()
        self._last: tuple[str, Estimate, int, datetime | None] | None = None

    def update(
        self, account: str, reading: Callable[[], Reading], position: datetime | None,
        pages: int,
    ) -> None:  # fmt: skip
        """``reading`` is asked only when a line is drawn: it may read the database."""
        if not self.live:
            return
        now = self.clock()
        if pages < self.min_pages or now - self._last_draw < MIN_INTERVAL:
            return
        self._last_draw = now
        where = reading()
        estimate = self._estimator.add(now, where)
        self._last = (account, estimate, where.records, position)
        self._draw(account, estimate, where.records, position)

    def finish(self, *, complete: bool = False) -> None:
        """End the line; a run that completed shows 100% first (its last page may not have
        been drawn)."""
        if not self.drawn:
            return
        if complete and self._last is not None:
            account, estimate, records, position = self._last
            self._draw(account, Estimate(1.0, estimate.rate, 0.0), records, position)
        self.stream.write("\n")
        self.stream.flush()
        self.drawn = False
        self._last = None
        self._last_draw = -math.inf
        self._estimator = Estimator()

    def _draw(
        self, account: str, estimate: Estimate, records: int, position: datetime | None
    ) -> None:
        line = render(account, estimate.share, position, records, estimate.rate, estimate.left)
        self.stream.write("\r" + fit(line, self.width() - 1) + CLEAR_TO_END)
        self.stream.flush()
        self.drawn = True


def render(
    account: str, done: float | None, position: datetime | None, records: int,
    rate: float | None, left: float | None,
) -> str:  # fmt: skip
    filled = int((done or 0.0) * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    share = f"{done:6.1%}" if done is not None else "    ?%"
    speed = f"{rate:,.0f}/s" if rate is not None else "?/s"
    eta = _clock_text(left) if left is not None else "?"
    at = f" at {position:%Y-%m-%d %H:%M}" if position else ""
    return f"{account} [{bar}] {share} {records:,} records {speed}, ~{eta} left{at}"


def fit(line: str, width: int) -> str:
    """Cut to ``width`` terminal columns (an account name may hold wide characters)."""
    used = 0
    for index, char in enumerate(line):
        used += char_width(char)
        if used > width:
            return line[:index]
    return line


def _clock_text(value: float) -> str:
    whole = round(value)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
