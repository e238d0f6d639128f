"""One account's request budget, shared by every worker thread.

``RateLimiter.acquire()`` blocks until the next request may go. Three things
decide when that is, and the latest of them wins:

* the configured budget: requests are spaced ``60 / requests_per_minute``
  seconds apart, so no 60-second window ever holds more than the budget;
* pacing from Zendesk's headers (``observe``): the per-minute limit is shared
  with every other app on the account, so when ``X-Rate-Limit-Remaining`` drops
  to ``LOW_FRACTION`` of ``X-Rate-Limit`` or below, requests are spaced so that
  what remains lasts until the window refreshes (``ratelimit-reset`` seconds,
  or a full minute when Zendesk does not say);
* a pause (``pause``): after a 429 or a 503 with ``Retry-After``, every thread
  waits until the pause is over, not only the one that was told.

``waited`` adds up the seconds callers spent blocked in ``acquire``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from etl.errors import ConfigError

WINDOW = 60.0  # seconds: Zendesk's limits are per minute
LOW_FRACTION = 0.2  # pace once remaining <= this share of the limit
MAX_RESET = 3600.0  # ignore absurd ratelimit-reset values beyond this
DEFAULT_RETRY_AFTER = 10.0  # Zendesk's own clients wait this when Retry-After is absent


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if requests_per_minute < 1:
            raise ConfigError(f"requests_per_minute must be at least 1, not {requests_per_minute}")
        self.requests_per_minute = requests_per_minute
        self.interval = WINDOW / requests_per_minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None  # when the last caller was let through
        self._paused_until = -math.inf
        self._pace_interval = 0.0  # spacing asked for by the headers...
        self._pace_until = -math.inf  # ...until this time
        self._waited = 0.0
        self._acquired = 0
        self._pauses = 0

    # -- counters -----------------------------------------------------------------
    @property
    def waited(self) -> float:
        """Total seconds callers have spent blocked in ``acquire``."""
        with self._lock:
            return self._waited

    @property
    def acquired(self) -> int:
        with self._lock:
            return self._acquired

    @property
    def pauses(self) -> int:
        with self._lock:
            return self._pauses

    @property
    def paced(self) -> bool:
        """Whether header pacing currently slows requests below the budget."""
        with self._lock:
            return self._clock() < self._pace_until and self._pace_interval > self.interval

    # -- the three inputs -----------------------------------------------------------
    def acquire(self) -> float:
        """Block until a request may go; return the seconds waited."""
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                ready = self._ready_at(now)
                if ready <= now:
                    self._last = now
                    self._acquired += 1
                    waited = now - started
                    self._waited += waited
                    return waited
            # Sleep outside the lock, then look again: a pause may have begun meanwhile.
            self._sleep(ready - now)

    def pause(self, seconds: float) -> None:
        """Hold every caller of ``acquire`` for ``seconds`` from now (Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + max(seconds, 0.0))
            self._pauses += 1

    def observe(self, headers: Mapping[str, str]) -> None:
        """Read Zendesk's rate-limit headers from a response and pace accordingly."""
        lower = {key.lower(): value for key, value in headers.items()}
        remaining = _int(lower.get("x-rate-limit-remaining", lower.get("ratelimit-remaining")))
        if remaining is None:
            return
        limit = _int(lower.get("x-rate-limit", lower.get("ratelimit-limit")))
        reset = _float(lower.get("ratelimit-reset"))
        window = reset if reset is not None and 0 < reset <= MAX_RESET else WINDOW
        threshold = (limit if limit else self.requests_per_minute) * LOW_FRACTION
        with self._lock:
            if remaining > threshold:
                self._pace_until = -math.inf
                self._pace_interval = 0.0
                return
            now = self._clock()
            self._pace_interval = window / max(remaining, 1)
            self._pace_until = now + window

    def _ready_at(self, now: float) -> float:
        spacing = self.interval
        if now < self._pace_until:
            spacing = max(spacing, self._pace_interval)
        ready = now if self._last is None else self._last + spacing
        return max(ready, self._paused_until)


def parse_retry_after(
    value: str | None, default: float = DEFAULT_RETRY_AFTER, *, now: datetime | None = None
) -> float:
    """Seconds to wait from a ``Retry-After`` value (seconds or HTTP date); garbage -> default."""
    if value is None or not value.strip():
        return default
    seconds = _float(value)
    if seconds is not None:
        return seconds if seconds >= 0 else default
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(delta, 0.0)


def _float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _int(value: str | None) -> int | None:
    number = _float(value)
    return None if number is None else int(number)
