"""How much a statistic changed between two runs, with an interval on the change.

A verdict (``Interval``, ``decide``) asks whether one run meets a threshold; a comparison asks
whether run B differs from run A by more than noise. Both runs are samples, so the interval
has to carry the uncertainty of both:

- **percentiles** (``pNN``): an exact bootstrap of each run's quantile. A bootstrap resample
  of n sorted values X(1..n) picks ranks ceil(n U) for n uniforms U, so its k-th order
  statistic is X(ceil(n U(k))) with U(k) ~ Beta(k, n + 1 - k) (the k-th of n uniforms; in
  binomial terms P(U(k) <= t) = P(Binomial(n, t) >= k)). The resampled quantile is therefore
  drawn straight from that law, O(resamples) instead of O(resamples x n), with the next
  order statistic U(k+1) = U(k) + (1 - U(k)) Beta(1, n - k) for numpy's linear
  interpolation. The two runs are resampled independently and the interval is the
  percentile interval of the resampled differences.
- **means** (``avg``): Welch's t on the difference of the means (deterministic, O(n)).
- **throughputs** (``rate_difference``): batch means. Each run is cut into equal time
  windows; window rates are nearly independent, and Welch's t compares the two sets.

Unlike ``Interval``, whose bounds are each one-sided at the confidence, ``[low, high]``
here is a two-sided interval at ``confidence`` (each side alpha / 2): a comparison flags a
change in either direction, so "changed at all" is wrong at most alpha of the time.
docs/statistics.md ("Comparing runs") gives the measured error rates and power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aiperf.metrics.definitions import parse_percentile
from aiperf.statistics._interval import check_confidence
from aiperf.statistics._mean import MIN_WINDOWS
from aiperf.statistics._quantile import min_samples_for_quantile

#: Requests a throughput window should hold on average: fewer make each window's count
#: too discrete for a t-interval over the windows.
MIN_REQUESTS_PER_WINDOW = 10
DEFAULT_RESAMPLES = 4000
WELCH_METHOD = "Welch's t on the difference of means"


@dataclass(frozen=True)
class Difference:
    """``after - before`` of one statistic, with a two-sided interval at ``confidence``.

    Infinite bounds mean the data cannot bound the change (``method`` says why); ``before``
    or ``after`` is NaN when that run has no values at all.
    """

    statistic: str
    before: float
    after: float
    delta: float
    low: float
    high: float
    confidence: float
    method: str

    @property
    def relative(self) -> tuple[float, float, float]:
        """(delta, low, high) as fractions of ``before``.

        ``before`` is taken as exact here, which it is not: the relative interval is the
        absolute one rescaled, a first-order approximation that keeps the sign of every
        bound (so a margin-0 decision is the same on either scale).
        """
        scale = abs(self.before)
        return (_ratio(self.delta, scale), _ratio(self.low, scale), _ratio(self.high, scale))

    @property
    def bounded(self) -> bool:
        """Both bounds are finite numbers."""
        return math.isfinite(self.low) and math.isfinite(self.high)


def difference_interval(
    before: np.ndarray,
    after: np.ndarray,
    statistic: str,
    confidence: float = 0.95,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Difference:
    """The change of ``statistic`` ("avg", or a percentile "p50", "p99", "p99.9", "p999")
    from the per-request values ``before`` to ``after``.

    Percentiles use the exact bootstrap (``resamples`` draws, reproducible through
    ``seed``); they need, in each run, the n at which the order-statistic bounds of that
    percentile exist at 1 - alpha/2 (p99 at 95 %: 367), since a bootstrap cannot reach past
    the sample's extremes either. ``avg`` uses Welch's t and needs 2 values per run.
    Values must be finite (an error-adjusted +inf has no difference).
    """
    confidence = check_confidence(confidence)
    before_values = _values(before, "before")
    after_values = _values(after, "after")
    if statistic == "avg":
        return _mean_difference(before_values, after_values, confidence)
    q = parse_percentile(statistic)
    if q is None:
        hint = " (a throughput: use rate_difference)" if statistic == "rate" else ""
        raise ValueError(
            f"statistic {statistic!r} has no difference interval{hint}; "
            "use 'avg' or a percentile such as 'p50', 'p99', 'p99.9'"
        )
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 100:
        raise ValueError(f"resamples must be an integer >= 100, got {resamples!r}")
    return _quantile_difference(
        before_values, after_values, statistic, q, confidence, resamples, seed
    )


def rate_difference(
    before_end_s: np.ndarray,
    after_end_s: np.ndarray,
    confidence: float = 0.95,
    *,
    before_weights: np.ndarray | None = None,
    after_weights: np.ndarray | None = None,
    windows: int = 10,
) -> Difference:
    """The change of a throughput: requests per second, or tokens per second when each
    request's tokens are given as ``*_weights`` (aligned with the end times).

    ``*_end_s`` are each request's end in seconds from the run's first start. Each run is
    cut into ``windows`` equal windows over [0, last end] (fewer when a run has under
    ``MIN_REQUESTS_PER_WINDOW`` requests per window; at least ``MIN_WINDOWS``), a request
    counts in the window where it ended, and Welch's t compares the two runs' window rates.
    The estimates are the whole runs' rates (total / last end).
    """
    confidence = check_confidence(confidence)
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < MIN_WINDOWS:
        raise ValueError(f"windows must be an integer >= {MIN_WINDOWS}, got {windows!r}")
    runs = []
    problems = []
    for label, ends, weights in (
        ("before", before_end_s, before_weights),
        ("after", after_end_s, after_weights),
    ):
        measured, problem = _window_rates(label, ends, weights, windows)
        runs.append(measured)
        if problem:
            problems.append(problem)
    (before_rates, before_total), (after_rates, after_total) = runs
    method = f"batch means ({before_rates.size} + {after_rates.size} windows), Welch's t"
    if problems:
        return _unbounded("rate", before_total, after_total, confidence,
                          f"{method}: {'; '.join(problems)}")
    difference = _welch("rate", before_rates, after_rates, confidence, method)
    # The window rates average to the whole run's rate; say so exactly, not up to rounding.
    return Difference("rate", before_total, after_total, after_total - before_total,
                      difference.low, difference.high, confidence, difference.method)


def _window_rates(
    label: str, ends: np.ndarray, weights: np.ndarray | None, windows: int
) -> tuple[tuple[np.ndarray, float], str | None]:
    end_s = _values(ends, f"{label} end times")
    weight = None
    if weights is not None:
        weight = _values(weights, f"{label} weights")
        if weight.size != end_s.size:
            raise ValueError(
                f"{label} weights ({weight.size}) must match its end times ({end_s.size})"
            )
    span = float(end_s.max()) if end_s.size else 0.0
    total = float(end_s.size if weight is None else weight.sum())
    rate = total / span if span > 0.0 else math.nan
    count = min(windows, end_s.size // MIN_REQUESTS_PER_WINDOW)
    if count < MIN_WINDOWS:
        need = MIN_WINDOWS * MIN_REQUESTS_PER_WINDOW
        return (np.empty(0), rate), (
            f"the {label} run has {end_s.size} requests, needs >= {need} "
            f"({MIN_WINDOWS} windows of {MIN_REQUESTS_PER_WINDOW})"
        )
    if not span > 0.0:
        return (np.empty(0), rate), f"the {label} run's requests all end at time {span:g}"
    width = span / count
    bins = np.clip((end_s // width).astype(np.int64), 0, count - 1)
    rates = np.bincount(bins, weights=weight, minlength=count).astype(np.float64) / width
    return (rates, rate), None


def _mean_difference(before: np.ndarray, after: np.ndarray, confidence: float) -> Difference:
    if before.size < 2 or after.size < 2:
        return _unbounded(
            "avg", _mean(before), _mean(after), confidence,
            f"{WELCH_METHOD}: needs >= 2 values per run "
            f"(before n = {before.size}, after n = {after.size})",
        )
    return _welch("avg", before, after, confidence,
                  f"{WELCH_METHOD} (n = {before.size} + {after.size})")


def _welch(
    statistic: str, before: np.ndarray, after: np.ndarray, confidence: float, method: str
) -> Difference:
    """Welch's t-interval on mean(after) - mean(before), at two-sided ``confidence``."""
    from scipy.special import stdtrit  # lazy: scipy costs a noticeable import

    mean_before, mean_after = _mean(before), _mean(after)
    delta = mean_after - mean_before
    with np.errstate(over="ignore"):  # an overflow is reported as the ValueError below
        share_before = float(before.var(ddof=1)) / before.size
        share_after = float(after.var(ddof=1)) / after.size
    variance = share_before + share_after
    if not math.isfinite(variance):
        raise ValueError("values are too large for a finite interval")
    if variance == 0.0:  # both runs constant: the change is known exactly
        return Difference(statistic, mean_before, mean_after, delta, delta, delta, confidence,
                          f"{method}; no spread in either run")
    # Welch-Satterthwaite degrees of freedom; a run without spread contributes no term.
    denominator = sum(
        share * share / (n - 1)
        for share, n in ((share_before, before.size), (share_after, after.size))
        if share > 0.0
    )
    dof = variance * variance / denominator
    t = float(stdtrit(dof, 1.0 - (1.0 - confidence) / 2.0))
    half = t * math.sqrt(variance)
    return Difference(statistic, mean_before, mean_after, delta, delta - half, delta + half,
                      confidence, method)


def _quantile_difference(
    before: np.ndarray,
    after: np.ndarray,
    statistic: str,
    q: float,
    confidence: float,
    resamples: int,
    seed: int,
) -> Difference:
    method = f"exact bootstrap of each quantile, {resamples} resamples, percentile interval"
    estimate_before = _percentile(before, q)
    estimate_after = _percentile(after, q)
    tail = 1.0 - (1.0 - confidence) / 2.0
    need = min_samples_for_quantile(q, tail, "both")
    if before.size < need or after.size < need:
        return _unbounded(
            statistic, estimate_before, estimate_after, confidence,
            f"{method}: {statistic} needs n >= {need} in each run for a bound at "
            f"{confidence * 100:g} % (before n = {before.size}, after n = {after.size})",
        )
    rng = np.random.default_rng(seed)
    drawn_before = _resampled_quantiles(before, q / 100.0, resamples, rng)
    drawn_after = _resampled_quantiles(after, q / 100.0, resamples, rng)
    alpha = 1.0 - confidence
    low, high = np.quantile(drawn_after - drawn_before, [alpha / 2.0, 1.0 - alpha / 2.0])
    return Difference(statistic, estimate_before, estimate_after,
                      estimate_after - estimate_before, float(low), float(high), confidence,
                      method)


def _resampled_quantiles(
    values: np.ndarray, p: float, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``resamples`` draws of numpy's linear p-quantile of a bootstrap resample of
    ``values``, each drawn from the exact law of the resample's order statistics."""
    n = values.size
    position = (n - 1) * p  # numpy's "linear": X(k) + frac * (X(k+1) - X(k)), 0-based k
    k = math.floor(position)
    fraction = position - k
    # The (k+1)-th smallest of n uniforms (1-based rank k+1) is Beta(k + 1, n - k).
    uniform = rng.beta(k + 1, n - k, resamples)
    ranks = [_rank(uniform, n)]
    if fraction > 0.0:  # then k + 1 <= n - 1, so Beta(1, n - k - 1) is proper
        # Given U(k+1) = u, the next order statistic is u plus the least of the n - k - 1
        # uniforms above u: (1 - u) times a Beta(1, n - k - 1).
        ranks.append(_rank(uniform + (1.0 - uniform) * rng.beta(1, n - k - 1, resamples), n))
    # Only the order statistics between the least and greatest drawn rank are needed: one
    # partition puts them in place, and a sort of that slice orders them.
    lowest = min(int(r.min()) for r in ranks)
    highest = max(int(r.max()) for r in ranks)
    placed = np.partition(values, (lowest, highest))
    window = np.sort(placed[lowest : highest + 1])
    drawn = window[ranks[0] - lowest]
    if fraction > 0.0:
        drawn = drawn + fraction * (window[ranks[1] - lowest] - drawn)
    return drawn


def _rank(uniform: np.ndarray, n: int) -> np.ndarray:
    """0-based rank ceil(n u) - 1 of the value a resample picks for the uniform ``u``."""
    return np.clip(np.ceil(uniform * n).astype(np.int64) - 1, 0, n - 1)


def _unbounded(
    statistic: str, before: float, after: float, confidence: float, method: str
) -> Difference:
    return Difference(statistic, before, after, after - before, -math.inf, math.inf,
                      confidence, method)


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else math.nan


def _mean(values: np.ndarray) -> float:
    if not values.size:
        return math.nan
    with np.errstate(over="ignore"):  # an overflow is reported as the ValueError below
        mean = float(values.mean())
    if not math.isfinite(mean):
        raise ValueError("values are too large to average (the sum overflows)")
    return mean


def _ratio(value: float, scale: float) -> float:
    if scale == 0.0 or math.isnan(scale):
        return math.nan if value == 0.0 or math.isnan(value) else math.copysign(math.inf, value)
    return value / scale


def _values(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(
            f"{what} must be finite (an error-adjusted +inf or a NaN has no difference)"
        )
    return array
