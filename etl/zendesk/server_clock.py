"""Zendesk's time, from the ``Date`` header of its responses.

The host clock may be wrong. A window ending in Zendesk's future would move the watermark
past records not yet written, and they would never be read; Zendesk also refuses bounds
less than about a minute old. So the end of a window is bounded by the time Zendesk says:
``min(host now, server now) - lag``. ``ServerClock`` remembers the newest ``Date`` seen,
with the host's monotonic clock at that moment, and so knows the server's "now" later
without trusting the host's wall clock. ``Date`` has whole seconds, truncated: the clock
is a lower bound of the server's time, which errs on the safe side (an earlier end).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

log = logging.getLogger(__name__)

# A skew beyond this is worth a warning (Zendesk's own rounding is one second).
SKEW_WARNING = timedelta(minutes=1)
# A Date further than this from the host clock is not believed: hostile or broken input.
MAX_BELIEVED_SKEW = timedelta(days=1)
EARLIEST = datetime(2007, 1, 1, tzinfo=UTC)


def parse_http_date(value: object) -> datetime | None:
    """An HTTP ``Date`` (RFC 9110, IMF-fixdate or the obsolete forms) as aware UTC."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    return _parse_recent_date(value)


# Every answer's Date is read, and answers within one second carry the same one: a recent
# text is parsed once (pure, its result immutable: the fetcher threads share it).
@functools.lru_cache(maxsize=64)
def _parse_recent_date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC by RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _host_now() -> datetime:
    return datetime.now(UTC)


class ServerClock:
    """Zendesk's "now", learnt from responses; safe to share between threads."""

    def __init__(
        self,
        *,
        wall: Callable[[], datetime] = _host_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._offset: float | None = None  # server time minus the monotonic clock, seconds
        self._warned = False

    def observe(self, headers: Mapping[str, str]) -> None:
        """Take in one response's headers; an absent or unbelievable ``Date`` is ignored."""
        moment = parse_http_date(headers.get("Date"))
        if moment is None or moment < EARLIEST:
            return
        host = self._wall()
        skew = host - moment
        if abs(skew) > MAX_BELIEVED_SKEW:
            log.debug("ignored a Date header %s away from the host clock", skew)
            return
        offset = moment.timestamp() - self._monotonic()
        with self._lock:
            # Each Date is a lower bound of the server's time: keep the tightest.
            if self._offset is None or offset > self._offset:
                self._offset = offset
            warn = not self._warned and abs(skew) > SKEW_WARNING
            self._warned = self._warned or warn
        if warn:
            log.warning(
                "the host clock is %s Zendesk's (Date header): windows end by Zendesk's time; "
                "fix the host's time synchronisation (NTP)",
                describe_skew(skew),
            )

    def server_now(self) -> datetime | None:
        """The server's time now, or None before any believable ``Date``."""
        with self._lock:
            offset = self._offset
        if offset is None:
            return None
        return datetime.fromtimestamp(offset + self._monotonic(), UTC)

    def skew(self) -> timedelta | None:
        """Host clock minus server clock (positive: the host is fast), once known."""
        server = self.server_now()
        return None if server is None else self._wall() - server

    def now(self) -> datetime:
        """The latest time both clocks agree has passed: ``min(host, server)``."""
        host = self._wall()
        server = self.server_now()
        return host if server is None else min(host, server)


def describe_skew(skew: timedelta) -> str:
    seconds = abs(skew.total_seconds())
    amount = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
    return f"{amount} {'ahead of' if skew > timedelta(0) else 'behind'}"
