"""RateLimiter with a fake clock: exact wait schedules; a few real-thread checks."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import UTC, datetime

import pytest
from parts.clock import FakeClock
from requests.structures import CaseInsensitiveDict

from etl.common.errors import ConfigError
from etl.zendesk.concurrency import LatencyWindow
from etl.zendesk.ratelimit import RateLimiter, parse_retry_after


def limiter(rpm: int, fake: FakeClock) -> RateLimiter:
    return RateLimiter(rpm, clock=fake.clock, sleep=fake.sleep)


def test_budget_spaces_requests_evenly() -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)
    waits = [rl.acquire() for _ in range(4)]
    assert waits == [0.0, 1.0, 1.0, 1.0]
    assert fake.sleeps == [1.0, 1.0, 1.0]
    assert rl.waited == 3.0
    assert rl.acquired == 4


def test_a_slow_caller_never_waits() -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)
    for _ in range(3):
        assert rl.acquire() == 0.0
        fake.now += 2.5  # the request itself took longer than the spacing
    assert fake.sleeps == []


def test_no_sixty_second_window_exceeds_the_budget() -> None:
    fake = FakeClock(0.0)
    rl = limiter(100, fake)
    sent: list[float] = []
    for i in range(450):
        rl.acquire()
        sent.append(fake.now)
        fake.now += 0.05 if i % 7 else 0.0  # uneven request durations
    for i, start in enumerate(sent):
        # (1 µs of slack for float rounding in the fake clock's sums)
        in_window = [t for t in sent[i:] if t < start + 60.0 - 1e-6]
        assert len(in_window) <= 100


def test_pause_holds_the_next_request() -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)
    rl.acquire()
    rl.pause(12)
    assert rl.acquire() == 12.0
    # then the spacing of a budget slowed down by DECREASE (0.7), until answers are clean
    assert rl.acquire() == pytest.approx(1 / 0.7)
    assert rl.pauses == 1


def test_pause_begun_while_another_caller_sleeps_is_honoured() -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)
    rl.acquire()
    # During the 1 s spacing sleep another thread receives a 429 with Retry-After 10.
    fake.on_sleep = lambda: rl.pause(10)
    assert rl.acquire() == 10.0
    assert fake.sleeps == [1.0, 9.0]


def test_a_shorter_pause_does_not_shorten_a_longer_one() -> None:
    fake = FakeClock(0.0)
    rl = limiter(600, fake)
    rl.pause(30)
    rl.pause(5)
    assert rl.acquire() == 30.0


def test_low_remaining_paces_until_the_window_refreshes() -> None:
    fake = FakeClock(0.0)
    rl = limiter(600, fake)  # our own budget: 0.1 s apart
    rl.acquire()
    rl.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "10"})
    assert rl.paced
    # 10 requests left for a window of (at most) 60 s: one every 6 s.
    assert [rl.acquire() for _ in range(3)] == [6.0, 6.0, 6.0]


def test_the_first_answer_leaves_the_other_apps_their_share() -> None:
    fake = FakeClock(0.0)
    rl = limiter(700, fake)
    rl.acquire()
    # 30 s into the minute, other apps have used 175 (350/min), this job 1.
    rl.observe({"x-rate-limit": "700", "ratelimit-remaining": "524", "ratelimit-reset": "30"})
    assert rl.paced
    assert rl.others == pytest.approx(350 / 60, rel=0.05)
    assert rl.rate() == pytest.approx(350 / 60, rel=0.05)


@pytest.mark.parametrize("mapping", [dict, CaseInsensitiveDict], ids=["dict", "requests"])
def test_header_names_are_read_in_any_case_from_either_mapping(mapping: type) -> None:
    # The client hands over requests' own (case-insensitive) headers, read as they are;
    # another mapping has its names lowered first.
    fake = FakeClock(0.0)
    rl = limiter(700, fake)
    rl.acquire()
    names = {"X-RATE-LIMIT": "700", "RateLimit-Remaining": "524", "ratelimit-RESET": "30"}
    rl.observe(mapping(names))
    assert rl.paced
    assert rl.others == pytest.approx(350 / 60, rel=0.05)


def test_nothing_remaining_waits_for_the_window() -> None:
    fake = FakeClock(0.0)
    rl = limiter(600, fake)
    rl.acquire()
    rl.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "0", "ratelimit-reset": "20"})
    assert rl.acquire() == 20.0


def test_plenty_remaining_does_not_slow_down_and_clears_pacing() -> None:
    fake = FakeClock(0.0)
    rl = limiter(600, fake)
    rl.acquire()
    rl.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "100"})
    assert rl.acquire() == pytest.approx(0.6)  # 100 left over 60 s: 0.6 s apart
    rl.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "650"})
    assert not rl.paced
    assert rl.acquire() == pytest.approx(0.1)


def test_pacing_expires_after_the_window() -> None:
    fake = FakeClock(0.0)
    rl = limiter(600, fake)
    rl.acquire()
    rl.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "3", "ratelimit-reset": "30"})
    assert rl.acquire() == 30.0  # nothing left for this job: held until the window ends
    fake.now += 31
    assert rl.acquire() == 0.0  # a new window: the old count no longer holds it


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Rate-Limit": "700"},
        {"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": "lots"},
        {"X-Rate-Limit": "many", "X-Rate-Limit-Remaining": "nan"},
    ],
    ids=["none", "limit-only", "garbage-remaining", "garbage-both"],
)
def test_missing_or_garbage_headers_change_nothing(headers: dict[str, str]) -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)
    rl.acquire()
    rl.observe(headers)
    assert rl.acquire() == 1.0


def test_without_a_limit_header_our_budget_is_the_yardstick() -> None:
    fake = FakeClock(0.0)
    rl = limiter(100, fake)  # low = 20 or fewer remaining
    rl.acquire()
    rl.observe({"X-Rate-Limit-Remaining": "30"})
    assert not rl.paced
    rl.observe({"X-Rate-Limit-Remaining": "20"})
    assert rl.acquire() == 3.0


def test_budget_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="requests_per_minute"):
        RateLimiter(0)


def test_threads_share_the_budget() -> None:
    # Real clock. Each grant's time is the last one the limiter read in that thread (a
    # stamp taken after acquire() returns could be late by however long the thread waits
    # for a busy CPU, and two stamps come out closer than their grants).
    last_read = threading.local()

    def clock() -> float:
        last_read.value = time.monotonic()
        return float(last_read.value)

    rl = RateLimiter(6000, clock=clock)  # 10 ms apart
    stamps: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(5):
            rl.acquire()
            with lock:
                stamps.append(last_read.value)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 20
    # A start may come up to LATE (a quarter) of a spacing early after a late one...
    assert min(gaps) >= 0.007
    # ... but the schedule never gets ahead: 20 starts take 19 spacings.
    assert stamps[-1] - stamps[0] >= 0.18


def test_a_pause_holds_every_thread() -> None:
    rl = RateLimiter(6000)
    rl.pause(0.2)
    started = time.monotonic()
    done: list[float] = []

    def work() -> None:
        rl.acquire()
        done.append(time.monotonic() - started)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == 3
    assert min(done) >= 0.19


NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        (" 30 ", 30.0),
        ("0", 0.0),
        (None, 10.0),
        ("", 10.0),
        ("soon", 10.0),
        ("-3", 10.0),
        ("inf", 10.0),
        ("Sun, 01 Mar 2026 12:00:45 GMT", 45.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),
    ],
    ids=[
        "int",
        "float",
        "spaces",
        "zero",
        "absent",
        "empty",
        "word",
        "negative",
        "inf",
        "http-date",
        "http-date-past",
    ],
)
def test_parse_retry_after(value: str | None, expected: float) -> None:
    assert parse_retry_after(value, now=NOW) == expected


# -- slowing down after 429s, speeding up again ------------------------------------------


def test_a_429_slows_the_rate_once_per_pause_and_clean_answers_restore_it() -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)  # 1 s apart
    rl.acquire()
    rl.pause(2)
    rl.pause(2)  # a second request in flight refused in the same episode: no second cut
    assert rl.factor == pytest.approx(0.7)
    assert rl.acquire() == 2.0
    assert rl.acquire() == pytest.approx(1 / 0.7)
    rl.pause(0)  # a new episode (the first pause is over): cut again
    assert rl.factor == pytest.approx(0.49)
    for _ in range(20):  # 20 clean answers regain 20% of the budget
        rl.observe({})
    assert rl.factor == pytest.approx(0.69)
    assert rl.rate() == pytest.approx(0.69)
    for _ in range(100):
        rl.observe({})
    assert rl.factor == 1.0  # never above the budget
    assert rl.rate() == 1.0


def test_repeated_429s_never_stop_the_job() -> None:
    fake = FakeClock(0.0)
    rl = limiter(600, fake)
    for _ in range(50):
        rl.pause(0)
    assert rl.factor == pytest.approx(0.1)  # MIN_FACTOR
    assert rl.rate() == pytest.approx(1.0)


# -- sharing the account's quota with other apps -------------------------------------------


def test_other_apps_use_is_left_to_them() -> None:
    """Limit 700/min, another app takes 350/min: this job keeps to the other 350."""
    fake = FakeClock(0.0)
    rl = limiter(700, fake)
    remaining, resets_at = 700, 60.0
    schedule: list[float] = []
    others_debt = 0.0
    while fake.now < 50:
        before = fake.now
        rl.acquire()
        schedule.append(fake.now)
        others_debt += (fake.now - before) * 350 / 60
        spent = int(others_debt)
        others_debt -= spent
        remaining -= 1 + spent
        assert remaining > 0, "the account's quota ran out: someone got a 429"
        rl.observe(
            {
                "X-Rate-Limit": "700",
                "X-Rate-Limit-Remaining": str(remaining),
                "ratelimit-reset": str(int(resets_at - fake.now)),
            }
        )
    assert rl.others == pytest.approx(350 / 60, rel=0.15)
    late = [t for t in schedule if t >= 20]
    ours_per_minute = (len(late) - 1) / (late[-1] - late[0]) * 60
    assert 300 <= ours_per_minute <= 360


def test_no_other_app_leaves_the_whole_budget() -> None:
    fake = FakeClock(0.0)
    rl = limiter(700, fake)
    remaining = 700
    for _ in range(500):
        rl.acquire()
        remaining -= 1
        rl.observe({"X-Rate-Limit": "700", "X-Rate-Limit-Remaining": str(remaining),
                    "ratelimit-reset": str(max(1, int(60 - fake.now)))})  # fmt: skip
    assert rl.others == 0.0
    assert fake.now == pytest.approx(499 * 60 / 700)


# -- latency, for etl.zendesk.concurrency ---------------------------------------------------------


def test_latency_is_the_time_from_acquire_to_observe() -> None:
    fake = FakeClock(0.0)
    latencies = LatencyWindow(clock=fake.clock)
    rl = RateLimiter(6000, clock=fake.clock, sleep=fake.sleep, latencies=latencies)
    for took in (0.2, 0.4, 0.3):
        rl.acquire()
        fake.now += took
        rl.observe({})
    rl.observe({})  # an answer without an acquire of this thread (none started): no sample
    assert rl.latencies.quantile(1.0) == pytest.approx(0.4)
    assert rl.latencies.quantile(0.5) == pytest.approx(0.3)


def test_late_wake_ups_keep_the_schedule_without_banking_a_burst() -> None:
    fake = FakeClock(0.0)
    rl = limiter(60, fake)  # one a second
    rl.acquire()
    fake.now = 1.2  # the caller for the 1.0 slot woke up 0.2 s late
    assert rl.acquire() == 0.0
    assert rl.acquire() == pytest.approx(0.8)  # due at 2.0, one spacing after the slot
    fake.now = 10.0  # idle: at most a quarter of a spacing is made up
    assert rl.acquire() == 0.0
    assert rl.acquire() == pytest.approx(0.75)


class SteppedTime:
    """A clock the test moves; ``sleep`` blocks the calling thread until the clock has
    reached its end, so several threads can wait in the limiter at once, deterministically."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeping = 0
        self._cond = threading.Condition()

    def clock(self) -> float:
        with self._cond:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            until = self.now + seconds
            self.sleeping += 1
            self._cond.notify_all()
            while self.now < until:
                self._cond.wait()
            self.sleeping -= 1
            self._cond.notify_all()

    def wait_for_sleepers(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.sleeping == count, timeout=60)

    def advance_to(self, when: float) -> None:
        with self._cond:
            self.now = when
            self._cond.notify_all()


def test_waiters_of_higher_priority_go_first_at_the_budgets_pace() -> None:
    steps = SteppedTime()
    rl = RateLimiter(60, clock=steps.clock, sleep=steps.sleep)  # one a second
    rl.acquire()  # the slot at 0 is taken
    granted: list[tuple[str, float]] = []
    lock = threading.Lock()

    def wait(name: str, priority: float) -> None:
        rl.acquire(priority)
        with lock:
            granted.append((name, steps.clock()))

    threads = []
    for count, (name, priority) in enumerate([("low", 1.0), ("high", 50.0), ("middle", 7.0)], 1):
        threads.append(threading.Thread(target=wait, args=(name, priority)))
        threads[-1].start()
        steps.wait_for_sleepers(count)  # each is waiting before the next comes
    assert rl.waiting == 3
    for second in (1, 2, 3):
        steps.advance_to(float(second))
        # This second's caller is through and the others sleep again: then time moves on.
        deadline = time.monotonic() + 60
        while not (len(granted) == second and steps.sleeping == 3 - second):
            assert time.monotonic() < deadline, (granted, steps.sleeping)
            time.sleep(0.001)
    for thread in threads:
        thread.join(60)
    # The low-priority caller came first but goes last; the pace stays one a second.
    assert granted == [("high", 1.0), ("middle", 2.0), ("low", 3.0)]
    assert rl.waiting == 0 and rl.acquired == 4


def test_a_waiter_that_gives_up_leaves_no_trace() -> None:
    def stopped(seconds: float) -> None:
        raise KeyboardInterrupt  # a stop raised from the sleep, as a signal's would be

    fake = FakeClock(0.0)
    rl = RateLimiter(60, clock=fake.clock, sleep=stopped)
    rl.acquire()
    with pytest.raises(KeyboardInterrupt):
        rl.acquire(priority=5.0)
    assert rl.waiting == 0
    fake.now = 1.0  # a later caller of any priority is not held behind the one that left
    assert rl.acquire() == 0.0
