"""Each load test's deadline (``aiperf_test_timeout``), and how a run is made to fit it.

A server that accepts connections and never answers would otherwise hold each request
for the engine's 600 s request timeout. The deadline works at two levels:

* the profile is bounded so the run ends in time by itself, with error records for the
  requests that did not finish: unless the test sets them, the per-request timeout is the
  deadline shared among the waves of requests, and a duration run's grace period is cut to
  what the deadline leaves;
* a backstop alarm, a little after the deadline, stops a run that overruns anyway (the
  mesh is then restarted for the next test). It needs the main thread (signals); off it,
  the bounded profile is the only guard.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig

COUNT_RUN_TIMEOUT_S = 600.0  # a request-count run's default deadline (one request's default)
DURATION_MARGIN_S = 60.0  # a duration run's default: duration + grace + this
BACKSTOP_MAX_S = 10.0  # the alarm fires up to this long after the deadline
MIN_REQUEST_TIMEOUT_S = 0.5


class LoadTestTimeout(Exception):
    """The load test ran past its ``aiperf_test_timeout``."""


def default_test_timeout(config: UserConfig) -> float:
    if config.benchmark_duration is not None:
        return config.benchmark_duration + config.benchmark_grace_period + DURATION_MARGIN_S
    return COUNT_RUN_TIMEOUT_S


def backstop(deadline: float) -> float:
    """When the alarm fires: a little after the deadline, so a run that fits it ends by
    itself (with its records) rather than being cut off."""
    return deadline + min(BACKSTOP_MAX_S, max(1.0, 0.5 * deadline))


def _margin(deadline: float) -> float:
    """Time kept back for the mesh's own work (start, collecting records)."""
    return min(10.0, 0.2 * deadline)


def bounded_profile(config: UserConfig, profile: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Overrides that make the run fit ``deadline``; keys the test set are left alone."""
    budget = deadline - _margin(deadline)
    out: dict[str, Any] = {}
    if config.benchmark_duration is not None:
        if "benchmark_grace_period" not in profile:
            out["benchmark_grace_period"] = max(
                0.0, min(config.benchmark_grace_period, budget - config.benchmark_duration))
        per_request = budget
    else:
        total = (config.resolved_request_count() or 0) + config.warmup_request_count
        concurrency = config.resolved_concurrency()  # None: an open-loop rate
        if concurrency:
            waves = math.ceil(total / concurrency) if total else 1
            per_request = budget / max(1, waves)
        else:  # an open-loop rate: requests overlap; the schedule itself takes total / rate
            per_request = budget - total / (config.request_rate or math.inf)
    if "request_timeout_seconds" not in profile:
        out["request_timeout_seconds"] = round(max(
            MIN_REQUEST_TIMEOUT_S, min(config.request_timeout_seconds, per_request)), 3)
    return out


@contextmanager
def alarm(seconds: float, message: str) -> Iterator[None]:
    """Raise LoadTestTimeout in the main thread after ``seconds``. An alarm already set
    (pytest-timeout's signal method) that fires sooner is left to do its job."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer"):
        yield
        return
    previous_delay, previous_interval = signal.getitimer(signal.ITIMER_REAL)
    if previous_delay and previous_delay <= seconds:
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise LoadTestTimeout(message)

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            left = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), previous_interval)
