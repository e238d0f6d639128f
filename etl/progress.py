"""A one-line progress bar for long backfills, drawn only on a terminal.

The share of the work is measured where the data is, not over the whole window: a
first run's window starts in 2007, but its first page tells where the records start.
A parallel backfill's slices (committed with their pages) tell what is read and what
is left of a plan that starts where the data does, including what earlier, killed
runs read. Rate and estimate count only this run's progress (a resumed backfill is
not credited with the earlier runs' speed), averaged since the bar began, so they
settle as the run goes. The line is cut to the terminal's width, so a redraw never
wraps, and ends clearing what a longer earlier line left.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

from etl.report import char_width

if TYPE_CHECKING:
    from etl.store import SliceRow

BAR_WIDTH = 20
MIN_INTERVAL = 0.5  # seconds between redraws (each may read the slices once)
CLEAR_TO_END = "\x1b[K"


def terminal_width(stream: TextIO) -> int:
    """Columns of the terminal ``stream`` writes to (asked at every redraw: it may be
    resized); ``$COLUMNS`` or 80 when it cannot say."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):  # not a terminal, or no file descriptor
        return shutil.get_terminal_size(fallback=(80, 24)).columns


def span_share(start: datetime, end: datetime, position: datetime | None) -> float:
    """The share of ``start .. end`` read up to ``position``."""
    span = (end - start).total_seconds()
    if position is None or span <= 0:
        return 0.0 if position is None else 1.0
    return min(max((position - start).total_seconds() / span, 0.0), 1.0)


def slices_share(slices: Sequence[SliceRow]) -> float:
    """The share of a parallel backfill's plan read, over all its slices."""
    total = sum((s.end - s.start).total_seconds() for s in slices)
    if total <= 0:
        return 0.0
    read = 0.0
    for s in slices:
        if s.done:
            read += (s.end - s.start).total_seconds()
        elif s.position is not None:
            read += min(
                max((s.position - s.start).total_seconds(), 0.0), (s.end - s.start).total_seconds()
            )
    return min(read / total, 1.0)


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
        self.clock = clock
        self.min_pages = min_pages  # short runs (the usual incremental one) draw nothing
        self.width = width or (lambda: terminal_width(stream))
        self.drawn = False
        self._last_draw = -1.0
        self._first: tuple[float, float, int] | None = None  # (time, share, records) at start
        self._last: tuple[str, float, int, datetime | None] | None = None

    def update(
        self, account: str, share: Callable[[], float], position: datetime | None, records: int,
        pages: int,
    ) -> None:  # fmt: skip
        """``share`` is asked only when a line is drawn: it may read the database."""
        now = self.clock()
        if pages < self.min_pages or now - self._last_draw < MIN_INTERVAL:
            return
        self._last_draw = now
        done = share()
        if self._first is None:
            self._first = (now, done, records)
        self._last = (account, done, records, position)
        self._draw(account, done, records, position, now)

    def finish(self, *, complete: bool = False) -> None:
        """End the line; a run that completed shows 100% first (its last page may not have
        been drawn)."""
        if not self.drawn:
            return
        if complete and self._last is not None:
            account, _, _, position = self._last
            self._draw(account, 1.0, self._last[2], position, self.clock(), final=True)
        self.stream.write("\n")
        self.stream.flush()
        self.drawn = False
        self._first = self._last = None

    def _draw(
        self, account: str, done: float, records: int, position: datetime | None, now: float,
        final: bool = False,
    ) -> None:  # fmt: skip
        assert self._first is not None
        started, done0, records0 = self._first
        elapsed = now - started
        rate = (records - records0) / elapsed if elapsed > 0 else None
        speed = (done - done0) / elapsed if elapsed > 0 else 0.0  # share per second
        left = 0.0 if final else (1 - done) / speed if speed > 0 else None
        line = render(account, done, position, records, rate, left)
        self.stream.write("\r" + fit(line, self.width() - 1) + CLEAR_TO_END)
        self.stream.flush()
        self.drawn = True


def render(
    account: str, done: float, position: datetime | None, records: int, rate: float | None,
    left: float | None,
) -> str:  # fmt: skip
    filled = int(done * BAR_WIDTH)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    speed = f"{rate:,.0f}/s" if rate is not None else "?/s"
    eta = _clock_text(left) if left is not None else "?"
    at = f" at {position:%Y-%m-%d %H:%M}" if position else ""
    return f"{account} [{bar}] {done:6.1%} {records:,} records {speed}, ~{eta} left{at}"


def fit(line: str, width: int) -> str:
    """Cut to ``width`` terminal columns (an account name may hold wide characters)."""
    used = 0
    for index, char in enumerate(line):
        used += char_width(char)
        if used > width:
            return line[:index]
    return line


def _clock_text(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
