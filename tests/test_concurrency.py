"""etl.zendesk.concurrency: the in-flight target, with an injected clock; the resizable gate."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from parts.clock import FakeClock

from etl.common.errors import ConfigError
from etl.config import loader as config
from etl.zendesk.concurrency import DEFAULT_BOUND, Gate, LatencyWindow, target


def test_target_is_rate_times_slow_latency_with_a_margin() -> None:
    assert target(700 / 60, 0.2, 64) == 4  # ceil(11.67 x 0.2 x 1.05) + 1
    assert target(2500 / 60, 0.2, 64) == 10
    assert target(700 / 60, 1.0, 64) == 14
    assert target(2500 / 60, 1.0, 64) == 45


def test_the_default_bound_covers_the_highest_plan_at_one_second() -> None:
    assert target(2500 / 60, 1.0, DEFAULT_BOUND) < DEFAULT_BOUND


def test_target_is_clipped_to_the_bound_and_to_one() -> None:
    assert target(2500 / 60, 5.0, 16) == 16
    assert target(0.01, 0.001, 16) == 2
    assert target(10.0, 0.5, 1) == 1  # workers = 1: sequential
    assert target(10.0, None, 16) == 1  # nothing measured yet
    assert target(0.0, 0.5, 16) == 1


def test_a_slowed_down_budget_needs_fewer_requests_in_flight() -> None:
    full = target(700 / 60, 0.6, 64)
    after_429 = target(0.7 * 700 / 60, 0.6, 64)
    shared = target(350 / 60, 0.6, 64)
    assert after_429 < full
    assert shared < after_429


def test_latency_window_quantile_follows_recent_latencies() -> None:
    clock = FakeClock(0.0)
    window = LatencyWindow(samples=10, max_age=30.0, clock=clock)
    assert window.quantile() is None
    for ms in range(100, 1100, 100):  # 0.1 .. 1.0 s
        window.add(ms / 1000)
    assert window.quantile(0.9) == pytest.approx(0.9)
    assert window.quantile(0.5) == pytest.approx(0.5)
    for _ in range(10):  # the link got faster: only the last SAMPLES count
        window.add(0.05)
    assert window.quantile(0.9) == pytest.approx(0.05)


def test_latency_window_forgets_old_samples() -> None:
    clock = FakeClock(0.0)
    window = LatencyWindow(samples=10, max_age=30.0, clock=clock)
    window.add(2.0)
    clock.now = 20.0
    window.add(0.2)
    assert window.quantile(1.0) == 2.0
    clock.now = 31.0
    assert window.quantile(1.0) == 0.2
    clock.now = 100.0
    assert window.quantile() is None


def test_slow_requests_still_out_count_with_their_age_so_far() -> None:
    clock = FakeClock(0.0)
    window = LatencyWindow(clock=clock)
    for thread in range(6):  # six requests start together
        window.begin(thread)
    clock.now = 0.3
    window.add(0.3, 0)  # the first answer is a fast one...
    window.add(0.3, 1)
    assert window.quantile(0.9) == pytest.approx(0.3)
    clock.now = 0.8  # ...while four are still out after 0.8 s: the link is slower
    assert window.quantile(0.9) == pytest.approx(0.8)
    for thread in range(2, 6):
        window.add(0.8, thread)
    clock.now = 5.0
    for thread in range(6):  # young requests out never lower the figure
        window.begin(thread)
    assert window.quantile(0.9) == pytest.approx(0.8)
    assert window.quantile(0.3) == pytest.approx(0.3)


def test_target_rises_and_falls_with_the_measured_latency() -> None:
    clock = FakeClock(0.0)
    window = LatencyWindow(samples=8, clock=clock)
    rate = 2500 / 60
    for _ in range(8):
        window.add(0.2)
    fast = target(rate, window.quantile(), 64)
    for _ in range(8):
        window.add(0.9)
    slow = target(rate, window.quantile(), 64)
    for _ in range(8):
        window.add(0.2)
    assert fast < slow
    assert target(rate, window.quantile(), 64) == fast


def test_gate_limits_holders_and_follows_resizing() -> None:
    gate = Gate(2)
    entered = threading.Semaphore(0)
    release = threading.Event()
    inside = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal inside, peak
        with gate.slot(lambda: False, poll=0.01) as held:
            assert held
            with lock:
                inside += 1
                peak = max(peak, inside)
            entered.release()
            release.wait(30)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30)
    assert not entered.acquire(timeout=0.2)  # the third waits
    gate.resize(4)
    assert entered.acquire(timeout=30) and entered.acquire(timeout=30)
    release.set()
    for t in threads:
        t.join(30)
    assert peak == 4


def test_gate_gives_up_when_cancelled() -> None:
    gate = Gate(1)
    with gate.slot(lambda: False) as first:
        assert first
        with gate.slot(lambda: True, poll=0.01) as second:
            assert not second
    with gate.slot(lambda: False) as again:  # the refused wait held nothing
        assert again


# -- [sync] workers: the bound -----------------------------------------------------------------

MINIMAL = '[zendesk]\nsubdomain = "acme"\noauth_token = "tok"\n'


@pytest.mark.parametrize(
    ("value", "bound"), [(None, DEFAULT_BOUND), ('"auto"', DEFAULT_BOUND), ("1", 1), ("200", 200)]
)
def test_workers_is_a_bound_or_auto(tmp_path: Path, value: str | None, bound: int) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL + (f"[sync]\nworkers = {value}\n" if value else ""))
    path.chmod(0o600)
    (account,) = config.load(path, environ={}).accounts
    assert account.sync.workers == bound


@pytest.mark.parametrize("value", ["0", "257", '"many"'])
def test_workers_out_of_range_is_named(tmp_path: Path, value: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(MINIMAL + f"[sync]\nworkers = {value}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=r"sync\.workers"):
        config.load(path, environ={})
