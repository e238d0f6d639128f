"""The account's rate limit: a sliding 60-second window of accepted requests.

Requests refused with 429 do not consume budget. Zendesk may count them, but
then a client that obeys Retry-After could still be refused when it comes back;
here Retry-After is exact: after waiting it, a slot is free.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

WINDOW = 60.0
DEFAULT_LIMIT = 700  # Enterprise; headers report it even when nothing is enforced


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds until a slot frees; 0 when allowed


class RateLimiter:
    def __init__(self, per_minute: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.enforced = per_minute is not None
        self.limit = per_minute if per_minute is not None else DEFAULT_LIMIT
        self._clock = clock
        self._accepted: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> Decision:
        with self._lock:
            now = self._clock()
            while self._accepted and self._accepted[0] <= now - WINDOW:
                self._accepted.popleft()
            if self.enforced and len(self._accepted) >= self.limit:
                wait = self._accepted[0] + WINDOW - now
                return Decision(False, self.limit, 0, max(1, math.ceil(wait)))
            self._accepted.append(now)
            remaining = max(0, self.limit - len(self._accepted))
            return Decision(True, self.limit, remaining, 0)

    def peek(self) -> Decision:
        """The current budget, for responses that do not count against it."""
        with self._lock:
            now = self._clock()
            used = sum(1 for moment in self._accepted if moment > now - WINDOW)
            return Decision(True, self.limit, max(0, self.limit - used), 0)
