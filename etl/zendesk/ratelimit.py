"""One account's request budget, shared by every worker thread.

``RateLimiter.acquire()`` blocks until the next request may go. Request *starts*
are spaced ``1 / rate`` seconds apart (so however the latencies vary, no second
and no minute sees more than the rate), and the rate is the lowest of:

* the configured budget, ``requests_per_minute``;
* the budget slowed down after a 429 (``pause``): multiplied by ``DECREASE`` once
  per pause, and raised again by ``RECOVERY`` of the budget per clean answer
  (``observe``), so a job that met a stricter server than its budget assumed
  settles just under what the server accepts;
* the share of the account's per-minute quota this job may spend (``observe``):
  Zendesk's limit is shared with every other app on the account, and
  ``etl.zendesk.quota.Quota`` estimates, from the first answer's headers on, how much of it
  the other apps use and how much of the window's count remains.

Besides, after a 429 or a 503 with ``Retry-After``, every thread waits until the
pause is over, not only the one that was told.

Callers waiting at once go in order of ``priority`` (higher first; equal priorities in
no particular order): a caller with ``n`` waiters of higher priority counts its turn
``n`` spacings later, so the budget's pace is unchanged and a waiter woken late
cannot hold the others up for more than its own turns. A parallel backfill gives each
fetcher the pages its slice has left: the slices that would finish last are read
fastest, they end together, and fewer splits are needed at the end of a run (each one
costs a request, half a page of records read twice).

What the headers may do is bounded by what Zendesk documents (a minute's window, limits of
at least ``MIN_LIMIT`` a minute, the lowest plan's): a ``ratelimit-reset`` beyond the
window is taken as unknown (so a used-up count holds requests for one window at most),
and an ``X-Rate-Limit`` below ``MIN_LIMIT`` or below what remains is ignored (so a limit
header can slow the job to ``FLOOR`` of its budget, never to a request a minute).
Only 429s, which are Zendesk's word, slow it further (``pause``). Every wait counts
against the caller's retry budget: no wait goes past its ``deadline`` (the request then
goes, and a 429 would end it, the budget spent); a wait longer than ``NOTICE_WAIT`` is
logged at info.

``waited`` adds up the seconds callers spent blocked in ``acquire``; ``latencies``
holds the recent time from ``acquire`` to ``observe`` (a request's latency), which
``etl.zendesk.concurrency`` sizes the number of requests in flight by.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from requests.structures import CaseInsensitiveDict

from etl.common.errors import ConfigError
from etl.zendesk.concurrency import LatencyWindow
from etl.zendesk.quota import WINDOW, Quota, Reading

log = logging.getLogger(__name__)

# Requests a minute: the lowest limit Zendesk documents (Team plan; the audit log needs
# Enterprise, 700). A lower X-Rate-Limit is not believed.
MIN_LIMIT = 200
NOTICE_WAIT = 5.0  # seconds: a wait for the budget longer than this is logged at info
DEFAULT_RETRY_AFTER = 10.0  # Zendesk's own clients wait this when Retry-After is absent
DECREASE = 0.7  # the rate's factor after a 429 (once per pause)
MIN_FACTOR = 0.1  # ... never below a tenth of the budget
RECOVERY = 0.01  # of the budget regained per clean answer: 30 answers undo one decrease
LATE = 0.25  # of a spacing: how late a start may be and still keep the schedule


class RateLimiter:
    def __init__(
        self,
        requests_per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        latencies: LatencyWindow | None = None,
        window: float = WINDOW,
    ) -> None:
        if requests_per_minute < 1:
            raise ConfigError(f"requests_per_minute must be at least 1, not {requests_per_minute}")
        self.requests_per_minute = requests_per_minute
        self.interval = window / requests_per_minute  # ``window``: tests shorten the minute
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None  # when the last caller was let through
        self._paused_until = -math.inf
        self._waited = 0.0
        self._acquired = 0
        self._pauses = 0
        self._factor = 1.0  # the slowdown after 429s
        self._window = window
        self._quota = Quota(requests_per_minute, window)
        self._started = threading.local()  # when this thread's request was let through
        self._waiting: dict[object, float] = {}  # callers in ``acquire``: their priority
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
            return self._quota.rate(self._clock()) * self.interval < 1

    @property
    def factor(self) -> float:
        """The share of the budget allowed since the last 429s (1.0: all of it)."""
        with self._lock:
            return self._factor

    @property
    def others(self) -> float:
        """Other apps' requests per second on the account, as the headers show them."""
        with self._lock:
            return self._quota.others

    def rate(self) -> float:
        """Requests per second allowed now (budget, slowdown and pacing together)."""
        with self._lock:
            return 1.0 / self._spacing(self._clock())

    # -- the three inputs -----------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Callers blocked in ``acquire`` now."""
        with self._lock:
            return len(self._waiting)

    def acquire(self, priority: float = 0.0, deadline: float | None = None) -> float:
        """Block until a request may go (after the waiters of higher ``priority``), but
        never past ``deadline`` (on this limiter's clock: the end of the request's retry
        budget), when it goes anyway and Zendesk's answer decides (a 429 then ends the
        request, its budget spent); return the seconds waited."""
        started = self._clock()
        me = object()
        told = False
        with self._lock:
            self._waiting[me] = priority
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    ahead = sum(1 for other in self._waiting.values() if other > priority)
                    ready = self._ready_at(now, ahead)
                    if deadline is not None and now >= deadline:
                        ready = now  # the headers' guess is not worth more than the budget
                    if ready <= now:
                        self._last = self._slot(ready, now)
                        self._quota.started(now)
                        self._started.at = self._latency_clock()
                        self.latencies.begin(threading.get_ident())
                        self._started.paced_at = now
                        self._acquired += 1
                        waited = now - started
                        self._waited += waited
                        return waited
                    why = self._why(now)
                if deadline is not None and ready > deadline:
                    ready, why = deadline, f"{why}; cut to the end of the retry budget"
                if not told and ready - now > NOTICE_WAIT:
                    told = True
                    log.info("waiting %.0f s for the rate limit (%s)", ready - now, why)
                # Sleep outside the lock, then look again: a pause may have begun meanwhile.
                self._sleep(ready - now)
        finally:
            with self._lock:
                del self._waiting[me]

    def _why(self, now: float) -> str:
        """What holds requests now, for a message."""
        if self._paused_until > now:
            return "Retry-After"
        if self._quota.hold_until(now) > now:
            return "X-Rate-Limit-Remaining: the window's count is used up"
        return "pacing"

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
            self.latencies.add(latency, threading.get_ident())
        # requests' headers look names up case-insensitively already; only another
        # mapping is copied with its names lowered (every answer comes through here).
        lower = (
            headers
            if isinstance(headers, CaseInsensitiveDict)
            else {key.lower(): value for key, value in headers.items()}
        )
        with self._lock:
            self._factor = min(1.0, self._factor + RECOVERY)
        remaining = _int(lower.get("x-rate-limit-remaining", lower.get("ratelimit-remaining")))
        if remaining is None:
            return
        limit = _int(lower.get("x-rate-limit", lower.get("ratelimit-limit")))
        reset = _float(lower.get("ratelimit-reset"))
        if reset is not None and not 0 < reset <= self._window:
            reset = None  # beyond a minute's window: where the window ends is unknown
        if limit is not None and (limit < MIN_LIMIT * self._window / WINDOW or limit < remaining):
            # Not a limit Zendesk has: nothing can be told of the other apps' share, so
            # only a low ``remaining`` is heeded (as without a reset).
            limit = reset = None
        with self._lock:
            now = self._clock()
            # The count is as of when the request arrived, after it started.
            began = getattr(self._started, "paced_at", None)
            self._started.paced_at = None
            reading = Reading(
                started=now - latency if began is None else began,
                answered=now,
                limit=limit if limit and limit > 0 else None,
                remaining=remaining,
                reset=reset,
            )
            self._quota.observe(reading)

    def _slot(self, ready: float, now: float) -> float:
        """The start this request counts as: a thread woken late keeps the schedule (the
        next start is due one spacing after this one was), so late wake-ups on a busy
        machine do not add up; an idle spell banks no burst: at most ``LATE`` of a
        spacing is made up."""
        return max(ready, now - LATE * self._spacing(now))

    def _spacing(self, now: float) -> float:
        allowed = self._quota.rate(now)  # 0: held until the window ends (``_ready_at``)
        return max(self.interval / self._factor, 1 / allowed if allowed > 0 else 0.0)

    def _ready_at(self, now: float, ahead: int = 0) -> float:
        """When the next start may go, ``ahead`` turns later for a caller with that many
        waiters of higher priority."""
        spacing = self._spacing(now)
        ready = now if self._last is None else self._last + spacing
        return max(ready, self._paused_until, self._quota.hold_until(now)) + ahead * spacing


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
