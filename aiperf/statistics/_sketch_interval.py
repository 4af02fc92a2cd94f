"""Confidence bounds from a quantile sketch (sketch mode), where the values themselves are gone.

A quantile's bounds are the same order statistics as ``quantile_interval`` picks (ranks from
the binomial); the sketch gives each as a value v within alpha of the true x (|v - x| <=
alpha |x|), so x lies in [v / (1 + alpha), v / (1 - alpha)] for a positive v: the lower bound
is widened to v / (1 + alpha), the upper to v / (1 - alpha) (about v * (1 -+ alpha); the
division makes the bound hold exactly, where a product falls short by alpha**2 at a bucket's
edge), and the other way round for a negative v. The widened bounds contain the exact ones,
so they hold at least as often; a threshold within the widening is INCONCLUSIVE rather than
decided on the sketch's rounding.

A mean's bounds are exact: the sketch keeps the count, mean and central moments of the values
themselves, so the t-interval with Hall's correction is the one ``mean_interval`` computes.
"""

from __future__ import annotations

import math
from typing import Protocol

from aiperf.statistics._interval import Interval, check_confidence
from aiperf.statistics._mean import MEAN_METHOD, mean_interval_from_moments
from aiperf.statistics._quantile import (
    QUANTILE_METHOD,
    _fraction,
    _missing_bound_note,
    order_statistic_ranks,
)


class QuantileSketch(Protocol):
    """What the intervals read from a sketch (``aiperf.statistics.sketch.MetricSketch``)."""

    relative_accuracy: float

    @property
    def count(self) -> int: ...

    @property
    def mean(self) -> float: ...

    @property
    def skewness(self) -> float: ...

    def std(self, ddof: int = 0) -> float: ...

    def value_at_rank(self, rank: int) -> float: ...

    def quantile(self, q: float) -> float: ...


def sketch_method(relative_accuracy: float) -> str:
    return (f"{QUANTILE_METHOD}, read from a DDSketch and widened by its relative accuracy "
            f"{relative_accuracy * 100:g} %")


def sketch_quantile_interval(sketch: QuantileSketch, q: float, confidence: float = 0.95,
                             failures: int = 0) -> Interval:
    """Bounds on the ``q``-th percentile from a sketch; ``failures`` adds that many +inf
    values (error-adjusted), ranked after every sketched value."""
    _fraction(q)
    confidence = check_confidence(confidence)
    if failures < 0:
        raise ValueError(f"failures must be >= 0, got {failures}")
    alpha = float(sketch.relative_accuracy)
    method = sketch_method(alpha)
    n_ok = int(sketch.count)
    n = n_ok + failures
    if n == 0:
        return Interval(None, None, None, confidence, method, 0, "no values")
    lower_rank, upper_rank = order_statistic_ranks(n, q, confidence)

    def at(rank: int) -> float:
        return math.inf if rank > n_ok else float(sketch.value_at_rank(rank))

    low = None if lower_rank is None else _widen(at(lower_rank), alpha, upper=False)
    high = None if upper_rank is None else _widen(at(upper_rank), alpha, upper=True)
    if failures:
        # numpy's "nearest", as the error-adjusted statistics use
        rank = round((n - 1) * (q / 100.0)) + 1
        estimate = at(rank)
    else:
        estimate = float(sketch.quantile(q))
    note = _missing_bound_note(q, confidence, n, lower_rank is None, upper_rank is None)
    if failures and not all(math.isfinite(x) for x in (estimate, low, high) if x is not None):
        infinite = "failed requests count as infinitely slow, and a +inf is written as null"
        note = infinite if note is None else f"{note}; {infinite}"
    return Interval(estimate, low, high, confidence, method, n, note)


def sketch_mean_interval(sketch: QuantileSketch, confidence: float = 0.95) -> Interval:
    """``mean_interval`` from the sketch's exact moments (no widening: nothing is rounded)."""
    n = int(sketch.count)
    mean = float(sketch.mean) if n else math.nan
    sd = float(sketch.std(ddof=1)) if n >= 2 else 0.0
    # mean_interval's skewness divides by the ddof=1 deviation; the sketch's by ddof=0.
    skewness = float(sketch.skewness) * (float(sketch.std()) / sd) ** 3 if sd > 0 else 0.0
    return mean_interval_from_moments(n, mean, sd, skewness, confidence,
                                      f"{MEAN_METHOD}, from the sketch's exact moments")


def _widen(value: float, alpha: float, upper: bool) -> float:
    """The farthest true value that the sketch could have read as ``value``: above it for an
    upper bound, below it for a lower one, whichever the value's sign."""
    if not math.isfinite(value):
        return value
    grows = upper == (value >= 0)  # outward is away from zero
    return value / (1.0 - alpha) if grows else value / (1.0 + alpha)
