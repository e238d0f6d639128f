"""The account's per-minute quota, shared with the other apps on it, as Zendesk's headers tell.

Zendesk counts an account's requests per minute: ``X-Rate-Limit`` a window,
``X-Rate-Limit-Remaining`` left in the current one when the request arrived, and
``ratelimit-reset`` the whole seconds until the count refreshes. ``Quota`` reads every
answer's headers (pure: the caller passes its clock's times) and keeps:

* **when the window ends.** The count is taken when the request arrives (after it
  started, before its answer) and the reset is rounded up, so each answer bounds the end
  to ``[started + reset - 1, answered + reset]``; a window's answers narrow these bounds
  to a fraction of a second, and the next window ends one ``window`` later.
* **the other apps' rate**, from the first answer on: what the window has used
  (``limit - remaining``) less this job's requests that started in it, over the elapsed
  part of the window. Early in a window few seconds back that count, so the previous
  window's rate weighs in too, as if seen for what is left of the window's first
  ``PRIOR``.
* **this job's allowance**: the limit less the other apps' rate, never above the budget.
  Once other apps share the quota (or ``remaining`` is low), also no more than what
  remains of the window's count, less the other apps' share of it and ``SAFETY``
  requests, spread over the rest of the window; nothing left: hold until the window ends.
  The allowance never falls below ``FLOOR`` of the budget: a rate read in one window (a
  burst, or this job's own previous run) may not last, and only answers can tell.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

WINDOW = 60.0  # seconds: Zendesk's limits are per minute
LOW_FRACTION = 0.2  # keep to what remains once remaining <= this share of the limit
SAFETY = 2  # requests of the window's count left unused when other apps share it
NOTICE = 0.02  # other apps' rate, as a share of the limit, that counts as sharing
PRIOR = 0.1  # of a window: the weight of the previous window's rate in a new one
TIMING = 0.05  # seconds: our requests this close to a reading may be counted either way
FLOOR = 0.05  # of the budget: allowed however much the other apps seem to use
KEPT = 10_000  # start times kept (trimmed to the last two windows beyond this)


@dataclass(frozen=True)
class Reading:
    """One answer's rate-limit headers, and when its request started and was answered."""

    started: float
    answered: float
    limit: int | None
    remaining: int
    reset: float | None  # seconds until the count refreshes; None: not said


class Quota:
    """What this job may spend of the account's quota; see the module docstring."""

    def __init__(self, budget: int, window: float = WINDOW) -> None:
        self.budget = budget  # requests a window this job is allowed at most
        self.window = window
        self.others = 0.0  # other apps' requests per second
        self._starts: list[float] = []  # when this job's recent requests started
        self._end: tuple[float, float] | None = None  # bounds of the current window's end
        self._prior: float | None = None  # the other apps' rate in the previous window
        self._allowed = float("inf")  # requests per second, by the other apps' share...
        self._left = float("inf")  # ... and by what remains, until ``_until``
        self._until = float("-inf")

    def started(self, at: float) -> None:
        """One of this job's requests started at ``at``."""
        self._starts.append(at)
        if len(self._starts) > KEPT:
            del self._starts[: bisect.bisect_left(self._starts, at - 2 * self.window)]

    def rate(self, now: float) -> float:
        """Requests per second this job may send now (inf: no limit from the quota; 0:
        nothing is left of the window's count)."""
        rate = min(self._allowed, self._left) if now < self._until else self._allowed
        return max(rate, 0.0)

    def hold_until(self, now: float) -> float:
        """Nothing of the window's count is left for this job: wait until this time
        (-inf: no such wait)."""
        return self._until if now < self._until and self._left <= 0 else float("-inf")

    def observe(self, reading: Reading) -> None:
        limit = reading.limit or self.budget
        if reading.reset is None or reading.reset <= 0:
            # Where the window lies is unknown: only a low remaining is heeded, spread
            # over a whole window.
            self._keep_to(reading.remaining, reading.answered + self.window, reading, limit)
            return
        if not self._place(reading):
            return  # a late answer from a window that is over
        assert self._end is not None
        begun = self._end[0] - self.window
        elapsed = max(reading.started - begun, self.window / 60)
        ours = self._count(begun, reading.started)
        # Our requests next to the reading may fall on either side of the server's count.
        noise = 1 + TIMING * self._recent_rate(reading.started)
        seen = max(0.0, limit - reading.remaining - ours - noise)
        # The previous window's rate fades out over the first PRIOR of this one.
        weight = 0.0 if self._prior is None else max(0.0, PRIOR * self.window - elapsed)
        self.others = (seen + (self._prior or 0.0) * weight) / (elapsed + weight)
        # Their use comes off the account's limit, not off this job's budget: a budget below
        # the limit already leaves them the difference. A floor: the rate may be a past
        # burst (or this job's own previous run) that will not come again, and only answers
        # can tell; what remains still bounds it below.
        share = min(self.budget, limit)
        free = limit - self.others * self.window
        self._allowed = max(min(share, free), share * FLOOR) / self.window
        self._keep_to(reading.remaining, self._end[1], reading, limit)

    def _keep_to(self, remaining: int, end: float, reading: Reading, limit: int) -> None:
        """Spread what remains of the count until ``end`` when others share it or it is low."""
        shared = self.others > limit / self.window * NOTICE
        if not shared and remaining > limit * LOW_FRACTION:
            self._left, self._until = float("inf"), float("-inf")
            return
        spare = SAFETY if shared else 0
        # Sent since the reading's request arrived, so already counted against what remains.
        since = self._count(reading.started, reading.answered)
        theirs = self.others * max(end - reading.started, 0.0)
        left = remaining - spare - since - theirs
        span = end - reading.answered
        self._left = left / span if left > 0 and span > 0 else 0.0
        self._until = end

    def _place(self, reading: Reading) -> bool:
        """Narrow the bounds of the current window's end; False: the reading is older."""
        assert reading.reset is not None
        low, high = reading.started + reading.reset - 1, reading.answered + reading.reset
        end = self._end
        if end is not None and high < end[0]:
            return False
        if end is None or low > end[1]:  # a new window
            if end is not None:
                self._prior = self.others
                if low <= end[1] + self.window:  # the next one: one window later
                    low, high = max(low, end[0] + self.window), min(high, end[1] + self.window)
            if low > high:  # the bounds disagree (clocks apart): this reading's own
                low = high = reading.answered + reading.reset - 0.5
            self._end = (low, high)
            return True
        low, high = max(low, end[0]), min(high, end[1])
        self._end = (low, high) if low <= high else ((low + high) / 2,) * 2
        return True

    def _count(self, after: float, until: float) -> int:
        """This job's requests that started after ``after`` and up to ``until``."""
        starts = self._starts
        return max(0, bisect.bisect_right(starts, until) - bisect.bisect_right(starts, after))

    def _recent_rate(self, now: float) -> float:
        """This job's requests per second over the last second."""
        return float(self._count(now - 1.0, now))
