"""The account's rate limit, counted as Zendesk's headers report it.

Requests are counted per minute: each window lasts ``WINDOW`` seconds (``window``: tests
shorten the minute to a few seconds, so that a run crosses several), the first one
from the first request (where Zendesk's minutes start is not documented); ``remaining``
is what the current window has left and ``reset`` the whole seconds until it refreshes
(``ratelimit-reset``).
A refused request gets ``Retry-After``: the seconds until it would be accepted.
Unenforced, the headers still report a limit (``advertised``, Zendesk's Enterprise 700 by
default), and a client that paces by them keeps to it: tests whose subject is not the pacing
advertise more, so that they do not wait for it.

Two modes, as Zendesk documents neither how bursts inside a minute are treated:

* ``burst`` (default): the whole minute's count may go at once;
* ``strict``: besides, requests must be spaced ``60 / limit`` seconds apart, with a
  tolerance of ``STRICT_TOLERANCE`` spacings (a GCRA, the usual leaky bucket), so a
  client that sends its minute in bunches is refused even below the count.

Requests refused with 429 do not consume budget. Zendesk may count them, but then a
client that obeys Retry-After could still be refused when it comes back; here
Retry-After is exact: after waiting it, a slot is free.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

WINDOW = 60.0
DEFAULT_LIMIT = 700  # Enterprise; headers report it even when nothing is enforced
STRICT_TOLERANCE = 1.0  # spacings a request may come early in strict mode (a burst of 2)
Mode = Literal["burst", "strict"]
MODES: tuple[Mode, ...] = ("burst", "strict")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # whole seconds until the window's count refreshes
    retry_after: int  # whole seconds until a request would be accepted; 0 when allowed


class RateLimiter:
    def __init__(
        self,
        per_minute: int | None,
        clock: Callable[[], float] = time.monotonic,
        mode: Mode = "burst",
        window: float = WINDOW,
        advertised: int = DEFAULT_LIMIT,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"rate limit mode must be one of {MODES}, not {mode!r}")
        self.enforced = per_minute is not None
        if advertised < 1:
            raise ValueError(f"the advertised rate limit must be at least 1, not {advertised!r}")
        self.limit = per_minute if per_minute is not None else advertised
        if not window > 0:
            raise ValueError(f"the rate limit's window must be positive, not {window!r}")
        self.mode = mode
        self.window = window
        self._clock = clock
        self._spacing = window / self.limit
        self._window = -math.inf  # start of the current window
        self._count = 0
        self._tat = -math.inf  # strict mode: the theoretical arrival time of the next request
        self._lock = threading.Lock()

    def acquire(self) -> Decision:
        with self._lock:
            now = self._clock()
            reset = _whole_seconds(self._roll(now) - now)
            if self.enforced and self._count >= self.limit:
                return Decision(False, self.limit, 0, reset, reset)
            if self.enforced and self.mode == "strict":
                early = max(self._tat, now) - now
                if early > STRICT_TOLERANCE * self._spacing:
                    wait = early - STRICT_TOLERANCE * self._spacing
                    remaining = max(0, self.limit - self._count)
                    return Decision(False, self.limit, remaining, reset, max(1, math.ceil(wait)))
                self._tat = max(self._tat, now) + self._spacing
            self._count += 1
            return Decision(True, self.limit, max(0, self.limit - self._count), reset, 0)

    def peek(self) -> Decision:
        """The current budget, for responses that do not count against it."""
        with self._lock:
            now = self._clock()
            reset = _whole_seconds(self._roll(now) - now)
            remaining = max(0, self.limit - self._count)
            return Decision(True, self.limit, remaining, reset, 0)

    def _roll(self, now: float) -> float:
        """Start a new window if the current one is over; return when it ends."""
        if self._window == -math.inf:
            self._window = now
        elif now >= self._window + self.window:
            self._window += math.floor((now - self._window) / self.window) * self.window
            self._count = 0
        return self._window + self.window


def _whole_seconds(left: float) -> int:
    """Seconds until the window refreshes, as the header gives them: at least 1, rounded up,
    but not past float noise: ``(now + 60) - now`` is 60.000000000007 for some ``now``, which
    a plain ceiling turned into a 61 s reset for a 60 s window."""
    return max(1, math.ceil(round(left, 6)))
