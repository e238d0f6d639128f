"""etl.zendesk.quota: the share of the account's quota this job keeps to, from the headers alone.

Pure: an account is simulated event by event (a count per window, refreshed at the
window's end, headers rounded as Zendesk rounds them), with no clock and no sleep.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import pytest

from etl.zendesk.quota import Quota, Reading

LIMIT = 700


@dataclass
class Account:
    """Zendesk's count: ``limit`` a ``window``, the first window beginning at ``begins``."""

    limit: int
    window: float = 60.0
    begins: float = 0.0
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    refused: int = 0

    def arrive(self, at: float, who: str) -> tuple[int, float] | None:
        """Count a request arriving at ``at``: (remaining, reset), or None when refused."""
        index = math.floor((at - self.begins) / self.window)
        count = self.counts.setdefault(index, {"us": 0, "others": 0})
        if count["us"] + count["others"] >= self.limit:
            self.refused += 1
            return None
        count[who] += 1
        end = self.begins + (index + 1) * self.window
        return self.limit - count["us"] - count["others"], float(max(1, math.ceil(end - at)))


def run(
    account: Account,
    quota: Quota,
    *,
    others_per_window: int,
    start: float,
    until: float,
    latency: float = 0.2,
    others_start: float = 0.0,
) -> None:
    """This job sends as fast as ``quota`` allows (its budget at most), each request in
    flight for ``latency``; another app sends ``others_per_window`` evenly."""
    budget_spacing = account.window / quota.budget
    # (time, order, kind, (started, remaining, reset) for an answer)
    events: list[tuple[float, int, str, tuple[float, int, float]]] = []
    order = 0

    def push(at: float, kind: str, data: tuple[float, int, float] = (0.0, 0, 0.0)) -> None:
        nonlocal order
        order += 1
        heapq.heappush(events, (at, order, kind, data))

    if others_per_window:
        push(others_start, "other")
    push(start, "send")
    while events:
        now, _, kind, data = heapq.heappop(events)
        if now > until:
            break
        if kind == "other":
            account.arrive(now, "others")
            push(now + account.window / others_per_window, "other")
        elif kind == "send":
            quota.started(now)
            answer = account.arrive(now + 0.01, "us")  # arrives a moment after it starts
            assert answer is not None, f"this job was refused at {now:.2f} s"
            push(now + latency, "answer", (now, *answer))
            rate = quota.rate(now)
            spacing = max(budget_spacing, 1 / rate if rate > 0 else 0.0)
            push(max(now + spacing, quota.hold_until(now)), "send")
        else:
            started, remaining, reset = data
            quota.observe(Reading(started, now, account.limit, remaining, reset))


def per_window(account: Account) -> list[tuple[int, int]]:
    """(ours, others') for each whole window, in order."""
    return [(c["us"], c["others"]) for _, c in sorted(account.counts.items())]


@pytest.mark.parametrize("latency", [0.2, 1.0])
def test_with_another_app_on_half_the_quota_the_job_keeps_to_the_rest(latency: float) -> None:
    account = Account(LIMIT)
    quota = Quota(LIMIT)
    # The other app began the window 20 s before this job's first request.
    run(account, quota, others_per_window=350, start=20.0, until=300.0, latency=latency)
    assert account.refused == 0  # neither side ever saw a 429
    assert quota.others == pytest.approx(350 / 60, rel=0.1)
    windows = per_window(account)
    first_ours, first_others = windows[0]
    # The first window: from the first answers on, what remained of its 40 s.
    assert first_ours <= LIMIT - first_others
    assert first_ours >= 0.9 * 350 * 40 / 60
    for ours, others in windows[1:4]:  # the whole windows that follow
        assert 0.9 * (LIMIT - others) <= ours <= LIMIT - others


def test_alone_the_job_spends_its_whole_budget() -> None:
    account = Account(LIMIT)
    quota = Quota(LIMIT)
    run(account, quota, others_per_window=0, start=0.0, until=180.0, latency=0.6)
    assert account.refused == 0
    assert quota.others == 0.0
    # The end of each window, with little left, is spread over an upper bound of its time.
    assert all(ours >= 0.98 * LIMIT for ours, _ in per_window(account)[:3])


def test_an_estimate_at_the_first_answer() -> None:
    quota = Quota(LIMIT)
    quota.started(10.0)
    # 50 s into the window, the other apps have used 500 (10 a second), this job 1.
    quota.observe(Reading(started=10.0, answered=10.3, limit=LIMIT, remaining=199, reset=10))
    assert quota.others == pytest.approx(10, rel=0.05)
    # 700/min less 10 a second: 1.67 a second (the reset's whole seconds leave the
    # elapsed part of the window uncertain by up to 1 s of its 50); and 199 left, less 2
    # kept and the others' 100 or so, over 10 s: 9.7 a second. The lower one holds.
    assert quota.rate(10.3) == pytest.approx(700 / 60 - 10, rel=0.2)


def test_a_budget_below_the_limit_is_never_exceeded() -> None:
    quota = Quota(300)
    quota.started(0.0)
    quota.observe(Reading(started=0.0, answered=0.2, limit=LIMIT, remaining=699, reset=60))
    assert quota.rate(0.2) == pytest.approx(300 / 60)


def test_other_apps_use_comes_off_the_limit_not_off_a_lower_budget() -> None:
    quota = Quota(400)  # the default budget, on Enterprise's 700
    quota.started(30.0)
    # 30 s into the window, another app has used 125 (250 a minute), this job 1.
    quota.observe(Reading(started=30.0, answered=30.2, limit=LIMIT, remaining=574, reset=30))
    assert quota.others == pytest.approx(250 / 60, rel=0.1)
    # 700 less their 250 leaves more than the budget: all of it, not 400 - 250.
    assert quota.rate(30.2) == pytest.approx(400 / 60)


def test_nothing_left_holds_until_the_window_ends_then_a_new_window_frees_it() -> None:
    quota = Quota(LIMIT)
    quota.started(0.0)
    quota.observe(Reading(started=0.0, answered=0.2, limit=LIMIT, remaining=1, reset=12))
    assert quota.rate(0.2) == 0.0
    assert 11.0 <= quota.hold_until(0.2) <= 12.2
    # The other apps' burst was this job's own previous run: the next window shows it.
    for step in range(1, 40):
        at = 12.2 + step * 0.2
        quota.started(at)
        quota.observe(Reading(at, at + 0.2, LIMIT, LIMIT - step, 60 - math.floor(step * 0.2)))
    assert quota.others < 0.5
    assert quota.rate(20.0) == pytest.approx(LIMIT / 60, rel=0.1)


def test_a_late_answer_from_the_last_window_is_ignored() -> None:
    quota = Quota(LIMIT)
    for begin in (0.0, 60.5):  # the window from 0 to 60, then the next
        for step in range(10):
            at, left = begin + step * 0.1, LIMIT - 1 - step
            quota.started(at)
            quota.observe(Reading(at, at + 0.2, LIMIT, left, 60 - math.floor(at % 60)))
    assert quota.others == 0.0
    # Started in the first window, its count nearly used up, answered in the second.
    quota.observe(Reading(59.0, 61.5, LIMIT, 3, 1))
    assert quota.others == 0.0
    assert quota.rate(61.5) == pytest.approx(LIMIT / 60)
