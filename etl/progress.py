"""A one-line progress bar for long backfills, drawn only on a terminal.

The position is the ``created_at`` being read: the window is a span of time, so
the share of it already read is the honest measure of what is left (records are
spread unevenly, so the estimate firms up as the run goes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

BAR_WIDTH = 24
MIN_INTERVAL = 0.2  # seconds between redraws


class ProgressBar:
    def __init__(
        self,
        stream: TextIO,
        *,
        clock: Callable[[], float] = time.monotonic,
        min_pages: int = 3,
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.min_pages = min_pages  # short runs (the usual incremental one) draw nothing
        self.started = clock()
        self.drawn = False
        self._last_draw = -1.0

    def update(
        self, account: str, start: datetime, end: datetime, position: datetime | None, records: int,
        pages: int,
    ) -> None:  # fmt: skip
        now = self.clock()
        if pages < self.min_pages or now - self._last_draw < MIN_INTERVAL or position is None:
            return
        self._last_draw = now
        self.stream.write("\r" + render(account, start, end, position, records, now - self.started))
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def render(
    account: str, start: datetime, end: datetime, position: datetime, records: int, elapsed: float
) -> str:
    span = (end - start).total_seconds()
    done = min(max((position - start).total_seconds() / span, 0.0), 1.0) if span > 0 else 1.0
    filled = int(done * BAR_WIDTH)
    rate = records / elapsed if elapsed > 0 else 0.0
    left = elapsed * (1 - done) / done if done > 0 else None
    eta = _clock_text(left) if left is not None else "?"
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return (
        f"{account} [{bar}] {done:6.1%} at {position:%Y-%m-%d %H:%M} "
        f"{records:,} records {rate:,.0f}/s, ~{eta} left "
    )


def _clock_text(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
