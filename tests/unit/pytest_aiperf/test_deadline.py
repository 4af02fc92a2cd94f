"""A load test's deadline bounds its profile, and a backstop alarm stops an overrun."""

from __future__ import annotations

import signal
import time

import pytest

from aiperf.common.config import UserConfig
from pytest_aiperf.deadline import (
    COUNT_RUN_TIMEOUT_S,
    LoadTestTimeout,
    alarm,
    bounded_profile,
    default_test_timeout,
)


def test_the_default_deadline_follows_the_profile() -> None:
    assert default_test_timeout(UserConfig(request_count=5)) == COUNT_RUN_TIMEOUT_S
    duration = UserConfig(benchmark_duration=10, benchmark_grace_period=5)
    assert default_test_timeout(duration) == 10 + 5 + 60


def test_requests_share_the_deadline_among_their_waves() -> None:
    profile = {"request_count": 3, "concurrency": 1}
    bounds = bounded_profile(UserConfig(**profile), profile, deadline=3.0)
    # 3 s less a 20 % margin, over 3 waves of one request
    assert bounds == {"request_timeout_seconds": pytest.approx(0.8)}
    wide = {"request_count": 8, "concurrency": 8}
    assert bounded_profile(UserConfig(**wide), wide, 100.0)["request_timeout_seconds"] == 90


def test_a_duration_run_gets_the_grace_that_the_deadline_leaves() -> None:
    profile = {"benchmark_duration": 2.0}
    bounds = bounded_profile(UserConfig(**profile), profile, deadline=6.0)
    assert bounds["benchmark_grace_period"] == pytest.approx(6.0 * 0.8 - 2.0)


def test_keys_the_test_set_are_left_alone() -> None:
    profile = {"request_count": 3, "request_timeout_seconds": 50.0,
               "benchmark_grace_period": 1.0}
    assert bounded_profile(UserConfig(**profile), profile, deadline=3.0) == {}


def test_an_open_loop_rate_keeps_time_for_its_schedule() -> None:
    profile = {"request_rate": 10.0, "request_count": 20}
    bounds = bounded_profile(UserConfig(**profile), profile, deadline=10.0)
    assert bounds["request_timeout_seconds"] == pytest.approx(8.0 - 2.0)


def test_the_alarm_stops_an_overrun_in_time() -> None:
    before, _ = signal.getitimer(signal.ITIMER_REAL)  # pytest-timeout's, if it has one
    started = time.monotonic()
    with pytest.raises(LoadTestTimeout, match="too slow"), alarm(0.2, "too slow"):
        time.sleep(5)
    elapsed = time.monotonic() - started
    assert elapsed < 2
    after, _ = signal.getitimer(signal.ITIMER_REAL)
    assert after == 0.0 if before == 0.0 else abs(after - (before - elapsed)) < 0.5


def test_an_earlier_alarm_of_someone_else_is_left_to_fire() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with alarm(5.0, "ours"):
            time.sleep(0.3)
        assert fired == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_later_alarm_of_someone_else_is_restored_after_ours() -> None:
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        with alarm(1.0, "ours"):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 28.0 < left <= 30.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
