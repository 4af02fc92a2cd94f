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
- **throughputs** (``rate_difference``): batch means. Each run's steady span (the middle
  90 % of its completions) is cut into equal time windows; window rates are nearly
  independent, and Welch's t compares the two sets.

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

#: Requests a throughput window should hold: shorter windows are correlated (a slow request
#: holds its slot across a boundary), measured as false alarms of 6.5-8 % instead of 5 % at
#: 20 per window (8 slots, lognormal sigma 1, 200-300 requests); at 50 they are <= 5 %.
MIN_REQUESTS_PER_WINDOW = 50
#: The share of completions left out at each end of a run for its steady throughput.
STEADY_TRIM = 0.05
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

    ``*_end_s`` are each request's end in seconds (from any origin). The rate compared is
    the **steady** one: completions between the run's 5th and 95th percentile end times,
    per second. The ramp-up and, above all, the drain (slots finishing one by one) are left
    out, because they are one random event per run that no window-to-window spread can
    measure. That span is cut into ``windows`` equal windows (fewer when they would hold
    under ``MIN_REQUESTS_PER_WINDOW`` requests each; at least ``MIN_WINDOWS``), and Welch's
    t compares the two runs' window rates. ``before``/``after`` are the steady rates, which
    is the window rates' mean.
    """
    confidence = check_confidence(confidence)
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < MIN_WINDOWS:
        raise ValueError(f"windows must be an integer >= {MIN_WINDOWS}, got {windows!r}")
    measured = [
        _window_rates(label, ends, weights, windows)
        for label, ends, weights in (
            ("before", before_end_s, before_weights),
            ("after", after_end_s, after_weights),
        )
    ]
    (before_rates, before_rate, before_problem), (after_rates, after_rate, after_problem) = (
        measured
    )
    method = (
        f"batch means over the middle {100 - 200 * STEADY_TRIM:g} % of completions "
        f"({before_rates.size} + {after_rates.size} windows), Welch's t"
    )
    problems = [p for p in (before_problem, after_problem) if p]
    if problems:
        return _unbounded("rate", before_rate, after_rate, confidence,
                          f"{method}: {'; '.join(problems)}")
    difference = _welch("rate", before_rates, after_rates, confidence, method)
    # The window rates average to the steady rate; report that, not its rounding.
    return Difference("rate", before_rate, after_rate, after_rate - before_rate,
                      difference.low, difference.high, confidence, difference.method)


def _window_rates(
    label: str, ends: np.ndarray, weights: np.ndarray | None, windows: int
) -> tuple[np.ndarray, float, str | None]:
    """(window rates, steady rate, why there are none) of one run."""
    end_s = _values(ends, f"{label} end times")
    weight = None
    if weights is not None:
        weight = _values(weights, f"{label} weights")
        if weight.size != end_s.size:
            raise ValueError(
                f"{label} weights ({weight.size}) must match its end times ({end_s.size})"
            )
    if end_s.size < 2:
        return np.empty(0), math.nan, f"the {label} run has {end_s.size} request end times"
    first, last = (float(x) for x in np.quantile(end_s, [STEADY_TRIM, 1.0 - STEADY_TRIM]))
    inside = (end_s >= first) & (end_s < last)
    span = last - first
    if not span > 0.0:
        return np.empty(0), math.nan, f"the {label} run's requests end all at once"
    kept = end_s[inside] - first
    kept_weight = None if weight is None else weight[inside]
    rate = float(kept.size if kept_weight is None else kept_weight.sum()) / span
    count = min(windows, kept.size // MIN_REQUESTS_PER_WINDOW)
    if count < MIN_WINDOWS:
        return np.empty(0), rate, (
            f"the {label} run has {kept.size} requests in its steady span, needs >= "
            f"{MIN_WINDOWS * MIN_REQUESTS_PER_WINDOW} ({MIN_WINDOWS} windows of "
            f"{MIN_REQUESTS_PER_WINDOW})"
        )
    width = span / count
    bins = np.clip((kept // width).astype(np.int64), 0, count - 1)
    rates = np.bincount(bins, weights=kept_weight, minlength=count).astype(np.float64) / width
    return rates, rate, None


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
    low, high = _percentiles(drawn_after - drawn_before, alpha / 2.0, 1.0 - alpha / 2.0)
    return Difference(statistic, estimate_before, estimate_after,
                      estimate_after - estimate_before, low, high, confidence, method)


def _percentiles(values: np.ndarray, *fractions: float) -> tuple[float, ...]:
    """numpy's linear quantiles at ``fractions``, from one partition (np.quantile's own
    overhead is most of its cost on a few thousand values)."""
    positions = [(values.size - 1) * f for f in fractions]
    below = [math.floor(x) for x in positions]
    above = [min(b + 1, values.size - 1) for b in below]
    placed = np.partition(values, sorted({*below, *above}))
    return tuple(
        float(placed[b] + (x - b) * (placed[a] - placed[b]))
        for x, b, a in zip(positions, below, above, strict=True)
    )


def _resampled_quantiles(
    values: np.ndarray, p: float, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``resamples`` draws of numpy's linear p-quantile of a bootstrap resample of
    ``values``, each drawn from the exact law of the resample's order statistics."""
    n = values.size
    position = (n - 1) * p  # numpy's "linear": X(k) + frac * (X(k+1) - X(k)), 0-based k
    k = math.floor(position)
    fraction = position - k
    # The (k+1)-th smallest of n uniforms (1-based rank k+1) is Beta(k + 1, n - k), drawn
    # as a ratio of gammas: twice as fast as numpy's beta.
    below = rng.standard_gamma(k + 1, resamples)
    uniform = below / (below + rng.standard_gamma(n - k, resamples))
    ranks = [_rank(uniform, n)]
    if fraction > 0.0:  # then k + 1 <= n - 1, so Beta(1, n - k - 1) is proper
        # Given U(k+1) = u, the next order statistic is u plus the least of the n - k - 1
        # uniforms above u: (1 - u) times a Beta(1, n - k - 1), which is 1 - V**(1/(n-k-1))
        # for a uniform V.
        gap = -np.expm1(np.log(rng.random(resamples)) / (n - k - 1))
        ranks.append(_rank(uniform + (1.0 - uniform) * gap, n))
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
