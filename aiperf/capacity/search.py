"""The search: double from the minimum until a probe fails, then bisect between the largest
passing and the smallest failing point until they are within the tolerance; and the
budgets (requests, seconds, probes) that it never exceeds.

It assumes the SLOs hold on a *downward-closed* set of loads: if a load passes, every
smaller one does. A probe that contradicts it (a pass above a failure) is kept in the
table, and the bracket stays the one the earlier probes made.

The probe function gets the ``Ledger`` and must check it before sending (``fits``): the
search never sends more than the request budget nor starts a run the time budget cannot
hold. A probe whose requests all fail ends the search at once with the cause; a probe the
client could not deliver (INVALID) ends it too, reported as the client's limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiperf.capacity.model import CapacityResult, Probe, point_text


class BudgetExhausted(Exception):
    """The next probe (or chunk) does not fit what is left of the budget."""


@dataclass(frozen=True)
class Budget:
    max_requests: int | None = None
    max_seconds: float | None = None
    max_probes: int | None = 20

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_seconds", "max_probes"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be above 0 (or None: no limit), got {value}")

    def to_dict(self) -> dict[str, float | None]:
        return {"max_requests": self.max_requests, "max_seconds": self.max_seconds,
                "max_probes": self.max_probes}


@dataclass
class Ledger:
    """What a search has used of its budget."""

    budget: Budget
    clock: Callable[[], float] = time.monotonic
    requests: int = 0
    probes: int = 0
    started: float = field(default=math.nan)

    def __post_init__(self) -> None:
        if math.isnan(self.started):
            self.started = self.clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def requests_left(self) -> int | None:
        if self.budget.max_requests is None:
            return None
        return max(0, self.budget.max_requests - self.requests)

    def seconds_left(self) -> float | None:
        if self.budget.max_seconds is None:
            return None
        return max(0.0, self.budget.max_seconds - self.elapsed)

    def fits(self, requests: int, seconds: float = 0.0) -> str | None:
        """None when a run of ``requests`` expected to take ``seconds`` fits; else why not."""
        left = self.requests_left()
        if left is not None and requests > left:
            return (f"request budget: {left} of {self.budget.max_requests} left, the next "
                    f"run needs {requests}")
        time_left = self.seconds_left()
        if time_left is not None and seconds > time_left:
            return (f"time budget: {time_left:.1f} s of {self.budget.max_seconds:g} s left, "
                    f"the next run needs about {seconds:.1f} s")
        return None

    def spend(self, requests: int) -> None:
        self.requests += requests


class Strategy:
    """Which point to probe next. ``integer``: points are whole numbers (concurrency)."""

    def __init__(self, low: float, high: float, tolerance: float = 0.1,
                 integer: bool = True) -> None:
        if not 0 < low <= high:
            raise ValueError(f"the search needs 0 < min <= max, got min {low:g}, max {high:g}")
        if not 0 < tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance:g}")
        if integer and (low != int(low) or high != int(high)):
            raise ValueError(f"concurrency bounds must be whole numbers, got {low:g}, {high:g}")
        self.low, self.high, self.tolerance, self.integer = low, high, tolerance, integer
        self.max_passing: float | None = None
        self.min_failing: float | None = None
        self.probed: set[float] = set()

    def next_point(self) -> float | None:
        """The next point, or None when the bracket is within the tolerance (or a bound)."""
        if self.max_passing is None:
            return None if self.min_failing is not None else self._fresh(self.low)
        if self.min_failing is None:
            if self.max_passing >= self.high:
                return None
            step = self.max_passing * 2
            return self._fresh(min(self.high, math.ceil(step) if self.integer else step))
        if self.converged:
            return None
        a, b = self.max_passing, self.min_failing
        mid = (a + b) // 2 if self.integer else (a + b) / 2
        return None if mid <= a or mid >= b else self._fresh(mid)

    def _fresh(self, point: float) -> float | None:
        if self.integer:  # a concurrency is a whole number, in the table and the JSON too
            point = int(point)
        return None if point in self.probed else point

    @property
    def converged(self) -> bool:
        """The answer is as exact as asked: the bracket within the tolerance, adjacent
        integers, or a bound reached (passes at the maximum, fails at the minimum)."""
        a, b = self.max_passing, self.min_failing
        if a is None:
            return b is not None  # fails at the minimum
        if b is None:
            return a >= self.high
        return b <= a * (1 + self.tolerance) or (self.integer and b - a <= 1)

    def record(self, point: float, passed: bool) -> None:
        self.probed.add(point)
        if passed:
            if self.min_failing is None or point < self.min_failing:
                self.max_passing = max(point, self.max_passing or point)
        elif self.max_passing is None or point > self.max_passing:
            self.min_failing = min(point, self.min_failing or point)


ProbeFunction = Callable[[float, Ledger], Probe]


def run_search(probe: ProbeFunction, *, over: str, low: float, high: float,
               tolerance: float = 0.1, budget: Budget | None = None,
               inconclusive_counts_as: str = "fail",
               clock: Callable[[], float] = time.monotonic,
               on_probe: Callable[[Probe], None] | None = None) -> CapacityResult:
    """Search ``over`` (``concurrency``: whole numbers) from ``low`` to ``high``.

    ``probe(point, ledger)`` runs one probe (checking and spending the ledger; raising
    ``BudgetExhausted`` when it does not fit). ``inconclusive_counts_as``: what a probe still
    INCONCLUSIVE after its extend budget counts as, ``fail`` (the default: a capacity is
    only ever a point that passed) or ``pass``."""
    if inconclusive_counts_as not in ("pass", "fail"):
        raise ValueError(f"inconclusive_counts_as must be pass or fail, not "
                         f"{inconclusive_counts_as!r}")
    budget = budget or Budget()
    strategy = Strategy(low, high, tolerance, integer=over == "concurrency")
    ledger = Ledger(budget, clock)
    result = CapacityResult(over, low, high, tolerance, budget=budget.to_dict())
    stopped = ""
    while True:
        point = strategy.next_point()
        if point is None:
            stopped = _why_done(strategy)
            break
        if budget.max_probes is not None and ledger.probes >= budget.max_probes:
            stopped = f"probe budget: {budget.max_probes} probes run"
            break
        try:
            outcome = probe(point, ledger)
        except BudgetExhausted as exc:
            stopped = str(exc)
            break
        ledger.probes += 1
        result.probes.append(outcome)
        if on_probe is not None:
            on_probe(outcome)
        if outcome.status == "ERROR":
            result.error = outcome.cause
            first = (outcome.cause or "").splitlines()[0] if outcome.cause else ""
            stopped = f"stopped at {point_text(point, over)}: {first}"
            break
        if outcome.status == "INVALID":
            result.client_limit = point
            stopped = (f"the client could not deliver {point_text(point, over)} (a limit of "
                       f"the client, not of the server): "
                       f"{(outcome.cause or '').splitlines()[0] if outcome.cause else ''}")
            break
        strategy.record(point, outcome.passed(inconclusive_counts_as))
    result.max_passing = strategy.max_passing
    result.min_failing = strategy.min_failing
    result.converged = strategy.converged
    result.requests = ledger.requests
    result.seconds = ledger.elapsed
    result.stopped = stopped
    return result


def _why_done(strategy: Strategy) -> str:
    a, b = strategy.max_passing, strategy.min_failing
    if a is None:
        return f"fails at the minimum ({b:g})"
    if b is None:
        return f"passes at the maximum ({a:g})"
    if strategy.integer and b - a <= 1:
        return f"found: passes at {a:g}, fails at {b:g}"
    return f"found within {strategy.tolerance:.0%}: passes at {a:g}, fails at {b:g}"
