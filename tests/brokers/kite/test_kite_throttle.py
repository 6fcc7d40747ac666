"""Token-bucket throttles, driven by a fake clock: no window is ever exceeded over a burst."""

from __future__ import annotations

import bisect
import threading

import pytest

from velox.brokers.throttle import RateLimit, Throttle, ThrottleSet
from velox.errors import ConfigError


class FakeClock:
    """A clock that only moves when the throttle sleeps (or the test advances it)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.slept.append(seconds)
        self.now += seconds


def max_in_window(times: list[float], period: float) -> int:
    """Return the largest number of grants inside any half-open window [t, t + period)."""
    ordered = sorted(times)
    return max(bisect.bisect_left(ordered, t + period - 1e-9) - i for i, t in enumerate(ordered))


def test_a_burst_never_exceeds_per_second_minute_and_day_limits() -> None:
    clock = FakeClock()
    limits = [RateLimit.per_second(10), RateLimit.per_minute(400), RateLimit.per_day(5000)]
    throttle = Throttle(limits, clock=clock, sleep=clock.sleep)
    grants = [throttle.acquire() for _ in range(5200)]
    assert max_in_window(grants, 1.0) <= 10
    assert max_in_window(grants, 60.0) <= 400
    assert max_in_window(grants, 86_400.0) <= 5000
    # and it is not slower than needed: the first 10 go at once, the 11th after one second
    assert grants[:10] == [1000.0] * 10 and grants[10] == pytest.approx(1001.0)
    # the 401st waits for the minute window, the 5001st for the day
    assert grants[400] == pytest.approx(1060.0)
    assert grants[5000] == pytest.approx(1000.0 + 86_400.0)


def test_requests_spread_out_in_time_are_not_delayed() -> None:
    clock = FakeClock()
    throttle = Throttle([RateLimit.per_second(3)], clock=clock, sleep=clock.sleep)
    for _ in range(20):
        throttle.acquire()
        clock.now += 0.5  # 2 per second: below the limit
    assert clock.slept == []


def test_delay_is_exact_for_the_oldest_grant_in_the_window() -> None:
    clock = FakeClock()
    throttle = Throttle([RateLimit.per_second(2)], clock=clock, sleep=clock.sleep)
    throttle.acquire()
    clock.now += 0.3
    throttle.acquire()
    assert throttle.delay(clock.now) == pytest.approx(0.7)
    assert throttle.acquire() == pytest.approx(1001.0)


def test_a_margin_widens_every_window() -> None:
    clock = FakeClock()
    throttle = Throttle([RateLimit.per_second(1)], clock=clock, sleep=clock.sleep, margin=0.05)
    assert [throttle.acquire() for _ in range(3)] == pytest.approx([1000.0, 1001.05, 1002.1])


def test_concurrent_callers_share_one_throttle() -> None:
    clock = FakeClock()
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            clock.sleep(seconds)

    throttle = Throttle([RateLimit.per_second(5)], clock=clock, sleep=sleep)
    grants: list[float] = []

    def worker() -> None:
        for _ in range(20):
            grants.append(throttle.acquire())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(grants) == 80 and max_in_window(grants, 1.0) <= 5


def test_throttle_set_falls_back_to_its_default_group() -> None:
    clock = FakeClock()
    groups = {"quote": [RateLimit.per_second(1)], "other": [RateLimit.per_second(10)]}
    throttles = ThrottleSet(groups, default="other", clock=clock, sleep=clock.sleep)
    assert throttles.throttle("profile") is throttles.throttle("other")
    throttles.acquire("quote")
    throttles.acquire("quote")
    assert clock.now == pytest.approx(1001.0)
    assert "quote" in repr(throttles)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ConfigError, match="count"):
        RateLimit(0, 1.0)
    with pytest.raises(ConfigError, match="period"):
        RateLimit(1, 0.0)
    with pytest.raises(ConfigError, match="at least one"):
        Throttle([])
    with pytest.raises(ConfigError, match="default group"):
        ThrottleSet({"a": [RateLimit.per_second(1)]}, default="b")
