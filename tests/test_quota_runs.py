"""A run that starts in a minute the run before it has half spent: the job's pace.

The account's count is the simulator's own (``zendesk_sim.edge.ratelimit.RateLimiter``), the
job's limiter ``etl.zendesk.ratelimit.RateLimiter``, both on one fake clock: each request
goes when the job's limiter lets it, is counted by the account a moment later and is
answered ``LATENCY`` after it started, with the headers the simulator sends. The job
cannot tell its own previous run's requests from another app's, so it sees them as
another app's; what they seem to use comes off the account's limit, never off the job's
budget when that is below the limit (it used to, and slowed such a run to the floor).
"""

from __future__ import annotations

import pytest
from parts.clock import FakeClock

from etl.zendesk.ratelimit import RateLimiter
from zendesk_sim.edge.ratelimit import Decision
from zendesk_sim.edge.ratelimit import RateLimiter as Account

LATENCY = 0.01  # seconds from a request's start to its answer; it arrives halfway


def headers(decision: Decision) -> dict[str, str]:
    """The rate-limit headers the simulator's app sends with ``decision``."""
    return {
        "X-Rate-Limit": str(decision.limit),
        "X-Rate-Limit-Remaining": str(decision.remaining),
        "ratelimit-reset": str(decision.reset),
    }


def run(account: Account, fake: FakeClock, budget: int, until: float) -> list[float]:
    """One run of the job (its own limiter, as a new process has), one request at a time
    as fast as its limiter allows, until ``until``: each request's wait for the limiter."""
    job = RateLimiter(budget, clock=fake.clock, sleep=fake.sleep)
    waits: list[float] = []
    while True:
        waited = job.acquire()
        if fake.now >= until:
            return waits
        fake.pace(LATENCY / 2)
        decision = account.acquire()
        assert decision.allowed, f"refused at {fake.now:.2f} s"
        fake.pace(LATENCY / 2)
        job.observe(headers(decision))
        waits.append(waited)


@pytest.mark.parametrize(
    ("limit", "budget", "left"),
    [
        # The default budget on Enterprise's limit: the first run's 400 a minute look like
        # another app's, which leaves 300 a minute, not the budget less 400.
        (700, 400, 300),
        # The bench's one simulator for several loads: a limit far above the budget.
        (10_000_000, 2_500, 2_500),
    ],
)
def test_a_run_in_a_minute_the_last_run_half_spent_keeps_to_what_the_limit_leaves(
    limit: int, budget: int, left: int
) -> None:
    fake = FakeClock(0.0)
    account = Account(limit, clock=fake.clock)  # its minute begins at the first request
    first = run(account, fake, budget, until=30.0)
    assert len(first) >= 0.95 * budget / 2  # half of the minute, at the whole budget
    fake.pace(1.0)  # the next run's start-up
    second = run(account, fake, budget, until=60.0)  # until the account's count refreshes
    # The minute's last 29 s at what the limit leaves (more as the other use seems to
    # fade), not at the floor (5% of the budget) that the budget less it came to.
    assert len(second) >= 0.9 * left * 29 / 60
    assert max(second) <= 60 / left
