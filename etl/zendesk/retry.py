"""The retry policy of one logical request, built from tenacity's parts.

Only RetriableError is retried (CorruptResponseError included: a body that is not UTF-8
JSON of the expected shape). Before each retry it sleeps Retry-After for a
RateLimitedError, otherwise an exponential backoff with equal jitter:
``b/2 + b/2 * jitter()`` where ``b = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**(n-1))`` for the
n-th failed attempt. It gives up, raising RetryBudgetExhausted, when the next attempt
would start more than ``budget`` seconds after the first one began (measured with the
injected clock). ``sleep`` and ``jitter`` are given, so tests assert the exact schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from etl.common.errors import RateLimitedError, RetriableError, RetryBudgetExhausted

BACKOFF_INITIAL = 1.0  # seconds
BACKOFF_MAX = 60.0


def failure(state: RetryCallState) -> BaseException | None:
    """The exception the attempt behind ``state`` ended with (None if it returned)."""
    return state.outcome.exception() if state.outcome is not None else None


def retrying(
    *,
    budget: float,
    started: float,
    clock: Callable[[], float],
    jitter: Callable[[], float],
    sleep: Callable[[float], None],
    before_sleep: Callable[[RetryCallState], None],
) -> Retrying:
    """The policy for a request whose first attempt began at ``started`` (on ``clock``)."""

    def out_of_budget(state: RetryCallState) -> bool:
        return clock() - started + state.upcoming_sleep > budget

    def wait(state: RetryCallState) -> float:
        last = failure(state)
        if isinstance(last, RateLimitedError):
            return last.retry_after
        base = min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** (state.attempt_number - 1))
        return base / 2 + base / 2 * jitter()

    def give_up(state: RetryCallState) -> Any:
        last = failure(state)
        raise RetryBudgetExhausted(
            f"gave up after {state.attempt_number} attempt"
            f"{'' if state.attempt_number == 1 else 's'} in {clock() - started:.0f} s "
            f"(retry budget {budget:g} s); last failure: {last}"
        ) from last

    return Retrying(
        sleep=sleep,
        stop=out_of_budget,
        wait=wait,
        retry=retry_if_exception_type(RetriableError),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
