"""One account's request budget, shared by every worker thread.

``RateLimiter.acquire()`` blocks until the next request may go. Request *starts*
are spaced ``1 / rate`` seconds apart (so however the latencies vary, no second
and no minute sees more than the rate), and the rate is the lowest of:

* the configured budget, ``requests_per_minute``;
* the budget slowed down after a 429 (``pause``): multiplied by ``DECREASE`` once
  per pause, and raised again by ``RECOVERY`` of the budget per clean answer
  (``observe``), so a job that met a stricter server than its budget assumed
  settles just under what the server accepts;
* pacing from Zendesk's headers (``observe``): the per-minute limit is shared with
  every other app on the account. Once ``X-Rate-Limit-Remaining`` drops to
  ``LOW_FRACTION`` of ``X-Rate-Limit``, or other apps are seen using the quota
  (what remaining drops by beyond this job's own requests), the job spends only
  what remains: ``remaining / seconds to the reset - others' rate`` (less ``SAFETY``
  requests when others share it)
  (``ratelimit-reset``, or a full minute when Zendesk does not say).

Besides, after a 429 or a 503 with ``Retry-After``, every thread waits until the
pause is over, not only the one that was told.

``waited`` adds up the seconds callers spent blocked in ``acquire``; ``latencies``
holds the recent time from ``acquire`` to ``observe`` (a request's latency), which
``etl.concurrency`` sizes the number of requests in flight by.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from etl.concurrency import LatencyWindow
from etl.errors import ConfigError

WINDOW = 60.0  # seconds: Zendesk's limits are per minute
LOW_FRACTION = 0.2  # pace once remaining <= this share of the limit
MAX_RESET = 3600.0  # ignore absurd ratelimit-reset values beyond this
DEFAULT_RETRY_AFTER = 10.0  # Zendesk's own clients wait this when Retry-After is absent
DECREASE = 0.7  # the rate's factor after a 429 (once per pause)
MIN_FACTOR = 0.1  # ... never below a tenth of the budget
RECOVERY = 0.01  # of the budget regained per clean answer: 30 answers undo one decrease
LATE = 0.25  # of a spacing: how late a start may be and still keep the schedule
SAFETY = 2  # requests of the remaining count left unused when other apps share it
OTHERS_MIN_SPAN = 3.0  # seconds between two readings that estimate the other apps' rate
STARTS_KEPT = 10_000  # start times kept (trimmed to the last two minutes beyond this)
OTHERS_SMOOTHING = 0.5  # weight of the newest estimate
OTHERS_NOTICE = 0.02  # other apps' rate, as a share of the limit, that turns pacing on


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        latencies: LatencyWindow | None = None,
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
        self._factor = 1.0  # the slowdown after 429s
        self._others = 0.0  # other apps' requests per second, from the headers
        # The last reading of the headers: (when, remaining, when it resets, our acquired).
        self._reading: tuple[float, int, float] | None = None  # (as of, remaining, reset at)
        self._others_raw = 0.0
        self._starts: list[float] = []  # when this job's recent requests started
        self._started = threading.local()  # when this thread's request was let through
        # Latency on its own clock (real time by default): tests that fake the pacing clock
        # still size their concurrency by what the requests really take.
        self.latencies = latencies or LatencyWindow()
        self._latency_clock = self.latencies.clock

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

    @property
    def factor(self) -> float:
        """The share of the budget allowed since the last 429s (1.0: all of it)."""
        with self._lock:
            return self._factor

    @property
    def others(self) -> float:
        """Other apps' requests per second on the account, as the headers show them."""
        with self._lock:
            return self._others

    def rate(self) -> float:
        """Requests per second allowed now (budget, slowdown and pacing together)."""
        with self._lock:
            return 1.0 / self._spacing(self._clock())

    # -- the three inputs -----------------------------------------------------------
    def acquire(self) -> float:
        """Block until a request may go; return the seconds waited."""
        started = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                ready = self._ready_at(now)
                if ready <= now:
                    self._last = self._slot(ready, now)
                    self._remember_start(now)
                    self._started.at = self._latency_clock()
                    self._acquired += 1
                    waited = now - started
                    self._waited += waited
                    return waited
            # Sleep outside the lock, then look again: a pause may have begun meanwhile.
            self._sleep(ready - now)

    def pause(self, seconds: float) -> None:
        """Hold every caller of ``acquire`` for ``seconds`` from now (Retry-After), and
        slow down: once per pause, however many requests in flight are refused with it."""
        with self._lock:
            now = self._clock()
            if now >= self._paused_until:
                self._factor = max(MIN_FACTOR, self._factor * DECREASE)
            self._paused_until = max(self._paused_until, now + max(seconds, 0.0))
            self._pauses += 1

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take in a response: its latency, Zendesk's rate-limit headers, and (unless a
        ``pause`` follows for it) one clean answer towards the full budget again."""
        started = getattr(self._started, "at", None)
        latency = 0.0
        if started is not None:
            self._started.at = None
            latency = self._latency_clock() - started
            self.latencies.add(latency)
        lower = {key.lower(): value for key, value in headers.items()}
        with self._lock:
            self._factor = min(1.0, self._factor + RECOVERY)
        remaining = _int(lower.get("x-rate-limit-remaining", lower.get("ratelimit-remaining")))
        if remaining is None:
            return
        limit = _int(lower.get("x-rate-limit", lower.get("ratelimit-limit"))) or 0
        reset = _float(lower.get("ratelimit-reset"))
        window = reset if reset is not None and 0 < reset <= MAX_RESET else WINDOW
        with self._lock:
            now = self._clock()
            # The count is as of when the request arrived, about when it started.
            self._estimate_others(now - latency, remaining, now + window)
            low = remaining <= (limit or self.requests_per_minute) * LOW_FRACTION
            shared = self._others > (limit or self.requests_per_minute) / WINDOW * OTHERS_NOTICE
            if not (low or shared):
                self._pace_until = -math.inf
                self._pace_interval = 0.0
                return
            # Other apps' requests make what remains uncertain: keep a few for them.
            spare = SAFETY if shared else 0
            ours = (max(remaining - spare, 0) / window) - self._others
            self._pace_interval = 1.0 / ours if ours > 0 else window
            self._pace_until = now + window

    def _estimate_others(self, as_of: float, remaining: int, resets_at: float) -> None:
        """Other apps' rate: what remaining fell by between two readings, less this job's
        own requests that the server counted in between (started between the two)."""
        reading = self._reading
        if reading is None or abs(resets_at - reading[2]) > 2.0:
            self._reading = (as_of, remaining, resets_at)  # a new window
            return
        span = as_of - reading[0]
        if span < OTHERS_MIN_SPAN:  # also an older reading, answered late: skip it
            return
        ours = bisect.bisect_right(self._starts, as_of) - bisect.bisect_right(
            self._starts, reading[0]
        )
        # Not clamped: latency noise errs both ways and averages out.
        sample = (reading[1] - remaining - ours) / span
        self._others_raw = OTHERS_SMOOTHING * sample + (1 - OTHERS_SMOOTHING) * self._others_raw
        self._others = max(0.0, self._others_raw)
        self._reading = (as_of, remaining, resets_at)

    def _remember_start(self, now: float) -> None:
        self._starts.append(now)
        if len(self._starts) > STARTS_KEPT:
            del self._starts[: bisect.bisect_left(self._starts, now - 2 * WINDOW)]

    def _slot(self, ready: float, now: float) -> float:
        """The start this request counts as: a thread woken late keeps the schedule (the
        next start is due one spacing after this one was), so late wake-ups on a busy
        machine do not add up; an idle spell banks no burst: at most ``LATE`` of a
        spacing is made up."""
        return max(ready, now - LATE * self._spacing(now))

    def _spacing(self, now: float) -> float:
        spacing = self.interval / self._factor
        if now < self._pace_until:
            spacing = max(spacing, self._pace_interval)
        return spacing

    def _ready_at(self, now: float) -> float:
        spacing = self._spacing(now)
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
