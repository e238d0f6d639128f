"""One fake clock for the tests: time moves only when someone sleeps, and every wait is
recorded instead of spent, so a test asserts the exact schedule in no time at all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class FakeClock:
    """A monotonic clock. Read it by calling it (or ``clock()``); ``sleep`` records the
    wait (rounded to the microsecond, so schedules compare without float noise) and moves
    time on; ``pace`` moves it on without recording (a rate limiter's spacing, say)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self.paced: list[float] = []
        self.on_sleep: Callable[[], None] | None = None
        """Run once, at the next sleep, before time moves on (then cleared)."""
        self._due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        if self.on_sleep is not None:
            hook, self.on_sleep = self.on_sleep, None
            hook()
        self._move(seconds)

    def pace(self, seconds: float) -> None:
        self.paced.append(seconds)
        self._move(seconds)

    def at(self, moment: float, action: Callable[[], None]) -> None:
        """Run ``action`` once a sleep or pace has brought the clock to ``moment``."""
        self._due.append((moment, action))

    def _move(self, seconds: float) -> None:
        self.now += seconds
        due = [entry for entry in self._due if entry[0] <= self.now]
        self._due = [entry for entry in self._due if entry[0] > self.now]
        for _, action in due:
            action()


class TickingWallClock:
    """A UTC wall clock the tests can predict: each reading is ``step`` later than the last."""

    def __init__(
        self,
        start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(seconds=1),
    ) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now
