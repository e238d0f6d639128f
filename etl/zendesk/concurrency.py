"""How many requests a backfill keeps in flight: sized by the job itself.

Little's law: to send ``rate`` requests a second when each takes ``latency``
seconds, ``rate x latency`` requests must be in flight. Fewer cap throughput
below the budget (4 fetchers at 200 ms make 1,200/min whatever the budget);
more only wait in the rate limiter. So the target is

    ceil(rate x slow_latency x MARGIN) + SPARE, clipped to [1, bound]

where ``rate`` is the limiter's current allowance (budget, header pacing and the
slowdown after a 429 included: never more in flight than the budget can use) and
``slow_latency`` a high quantile of the recent latencies, so that jitter (a run of
slow answers holding every slot while the limiter's turn passes) does not starve
the budget. Both are measured as the run goes: the target rises and falls with
them. ``bound`` is ``[sync] workers``.

``LatencyWindow`` keeps the recent samples (pure, thread-safe); ``target`` is the
rule; ``Gate`` is a semaphore whose size can change, which fetcher threads take
around each request, so surplus fetchers park between pages when the target falls.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

# Room for latencies above the quantile and for the time between requests. Each fetcher
# needs a slice of its own, and each slice costs a partial page: no more than that.
MARGIN = 1.05
SPARE = 1  # one more than the product: a fetcher is busy parsing while others wait
QUANTILE = 0.9  # of the recent latencies: jitter is covered by the slow ones
SAMPLES = 64  # recent latencies kept
MAX_AGE = 30.0  # seconds: older samples no longer describe the link
DEFAULT_BOUND = 64  # covers 2,500/min (41.7/s) at 1 s latency: ceil(41.7 x 1 x 1.05) + 1 = 45


class LatencyWindow:
    """The latencies of the last ``SAMPLES`` requests younger than ``MAX_AGE`` seconds,
    and the requests still waiting for their answer (``begin``)."""

    def __init__(
        self,
        *,
        samples: int = SAMPLES,
        max_age: float = MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=samples)
        self._pending: dict[Hashable, float] = {}  # a request in flight's key: its start
        self._max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()

    def begin(self, key: Hashable) -> None:
        """A request ``key`` (one per thread: a new one replaces its last) started now."""
        with self._lock:
            self._pending[key] = self.clock()

    def add(self, seconds: float, key: Hashable | None = None) -> None:
        """A request took ``seconds``; ``key``: the ``begin`` it answers."""
        with self._lock:
            self._samples.append((self.clock(), max(seconds, 0.0)))
            self._pending.pop(key, None)

    def quantile(self, q: float = QUANTILE) -> float | None:
        """The ``q`` quantile (nearest rank) of the recent latencies; None: none yet.

        The first answers are the fast ones: while slow requests are still out, their
        ages so far count too (when that raises the figure), so the estimate does not
        trail the link at the start of a run."""
        with self._lock:
            now = self.clock()
            cutoff = now - self._max_age
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
            values = sorted(latency for _, latency in self._samples)
            ages = [now - start for start in self._pending.values() if start >= cutoff]
        if not values:
            return None
        return max(_nearest_rank(values, q), _nearest_rank(sorted(values + ages), q))


def _nearest_rank(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def target(rate_per_second: float, latency: float | None, bound: int) -> int:
    """Requests to keep in flight for ``rate_per_second`` at ``latency`` seconds each.

    Before any latency is known, one: the first page of a window is read alone anyway
    (where its records begin is unknown before it).
    """
    if bound <= 1 or latency is None or rate_per_second <= 0:
        return 1
    wanted = math.ceil(rate_per_second * latency * MARGIN) + SPARE
    return max(1, min(bound, wanted))


class Gate:
    """A semaphore of ``size`` slots; ``size`` may change while threads hold slots."""

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._held = 0
        self._cond = threading.Condition()

    @property
    def size(self) -> int:
        with self._cond:
            return self._size

    def resize(self, size: int) -> None:
        with self._cond:
            self._size = max(1, size)
            self._cond.notify_all()

    @contextmanager
    def slot(self, cancelled: Callable[[], bool], poll: float = 0.1) -> Iterator[bool]:
        """Hold a slot for the block; yields False (holding none) once ``cancelled()``."""
        acquired = self._take(cancelled, poll)
        try:
            yield acquired
        finally:
            if acquired:
                with self._cond:
                    self._held -= 1
                    self._cond.notify()

    def _take(self, cancelled: Callable[[], bool], poll: float) -> bool:
        with self._cond:
            while self._held >= self._size:
                if cancelled():
                    return False
                self._cond.wait(poll)
            self._held += 1
            return True
