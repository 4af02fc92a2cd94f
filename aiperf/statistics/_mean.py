"""Student-t bounds on a mean: of requests, of time windows (batch means), of repeated runs.

The t-interval is exact for normal data and, by the central limit theorem, close for a mean of
many independent values. It is chosen over a bootstrap because it is deterministic (a verdict
must not depend on a random seed) and costs O(n). Its weakness is skewed data: for right-skewed
latencies the plain upper bound is too low (lognormal sigma=1: 93 % instead of 95 % at n=1000).
Per-request means therefore get Hall's (1992) skewness-corrected t, and the bound on the heavy
tail's side is withheld until n reaches Cochran's rule n >= 25 * skewness**2 (and 30).
docs/statistics.md gives the coverage measured for lognormal and bimodal data.
"""

from __future__ import annotations

import math

import numpy as np

from aiperf.statistics._interval import Interval, check_confidence

MIN_WINDOWS = 5
MEAN_METHOD = "t-interval with Hall's skewness correction"
#: Below this n the heavy tail's bound is withheld whatever the skewness: a sample of 10 rarely
#: shows enough of a tail to estimate its skewness.
MIN_N_HEAVY_SIDE = 30
#: Cochran's rule for when a mean is close enough to normal: n >= 25 * skewness**2.
COCHRAN = 25.0


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> Interval:
    """Bounds on the mean of independent per-request values.

    Hall's transformation of the t statistic removes the first-order effect of skewness, which
    makes the plain t-interval's bound on the tail side too tight. When n is too small for the
    skewness seen (Cochran's rule), the bound on the tail's side is withheld (None) rather than
    given with less confidence than it claims; the other side keeps its bound.
    """
    confidence = check_confidence(confidence)
    values = _finite_vector(values, "values")
    n = int(values.size)
    if n < 2:
        return _t_interval(values, confidence, MEAN_METHOD, "values")
    mean = _checked_mean(values)
    centred = values - mean
    # Scaled to at most 1 so that squares and cubes cannot overflow for huge values.
    scale = float(np.abs(centred).max())
    unit = centred / scale if scale > 0.0 else centred
    squares = unit * unit
    unit_sd = math.sqrt(float(squares.sum()) / (n - 1))
    sd = unit_sd * scale
    # dot() rather than unit**3: numpy's power with exponent 3 is ~50x slower.
    skewness = float(np.dot(squares, unit)) / n / unit_sd**3 if sd > 0.0 else 0.0
    return mean_interval_from_moments(n, mean, sd, skewness, confidence)


def mean_interval_from_moments(n: int, mean: float, sd: float, skewness: float,
                               confidence: float = 0.95, method: str = MEAN_METHOD) -> Interval:
    """``mean_interval`` from the sample's moments: ``sd`` with ddof=1 and ``skewness`` as
    (sum of cubed deviations / n) / sd**3. A quantile sketch keeps these exactly."""
    confidence = check_confidence(confidence)
    if n == 0:
        return Interval(None, None, None, confidence, method, 0, "no values")
    if n < 2:
        return Interval(mean, None, None, confidence, method, n,
                        "no interval: needs >= 2 values")
    from scipy.special import stdtrit  # lazy: scipy costs a noticeable import

    t = float(stdtrit(n - 1, confidence))
    low: float | None = mean - sd * _hall_inverse(t, skewness, n)
    high: float | None = mean - sd * _hall_inverse(-t, skewness, n)
    if not (math.isfinite(low) and math.isfinite(high)):  # type: ignore[arg-type]
        raise ValueError("values are too large for a finite interval")
    need = max(MIN_N_HEAVY_SIDE, math.ceil(COCHRAN * skewness * skewness))
    note = None
    if n < need:
        side = "upper" if skewness >= 0 else "lower"
        if side == "upper":
            high = None
        else:
            low = None
        note = f"no {side} bound: skewness {skewness:.2g} needs n >= {need} (n = {n})"
    return Interval(mean, low, high, confidence, method, n, note)


def _hall_inverse(x: float, skewness: float, n: int) -> float:
    """The (x_bar - mu) / s that Hall's transformed statistic maps to x.

    Hall's statistic is g(S) = sqrt(n) * (((1 + skewness * S / 3)**3 - 1) / skewness
    + skewness / (6 n)) with S = (x_bar - mu) / s: monotone, so it inverts in closed form.
    """
    root_n = math.sqrt(n)
    if abs(skewness) < 1e-9:  # the limit: the plain t statistic
        return x / root_n
    inner = 1.0 + skewness * (x / root_n - skewness / (6.0 * n))
    return 3.0 / skewness * (float(np.cbrt(inner)) - 1.0)


def batch_means_interval(window_values: np.ndarray, confidence: float = 0.95) -> Interval:
    """t-interval over a per-window statistic (e.g. throughput in each of 10 windows).

    Requests within a run are correlated in time; means of long enough windows are nearly
    independent, which makes the t-interval over them valid (the batch-means method). Fewer than
    five windows give only the point estimate.
    """
    values = _finite_vector(window_values, "window values")
    method = f"batch means (t over {values.size} windows)"
    if values.size < MIN_WINDOWS:
        estimate = float(values.mean()) if values.size else None
        return Interval(
            estimate,
            None,
            None,
            check_confidence(confidence),
            method,
            int(values.size),
            f"no interval: fewer than {MIN_WINDOWS} windows",
        )
    return _t_interval(values, confidence, method, "windows")


def across_runs_interval(per_run: np.ndarray, confidence: float = 0.95) -> Interval:
    """t-interval over one statistic from each of N repeated runs: the run-to-run spread (a
    machine that is slower this hour) that no single run can see."""
    values = _finite_vector(per_run, "per-run values")
    return _t_interval(values, confidence, f"t over {values.size} runs", "runs")


def _t_interval(values: np.ndarray, confidence: float, method: str, what: str) -> Interval:
    confidence = check_confidence(confidence)
    values = _finite_vector(values, what)
    n = int(values.size)
    if n == 0:
        return Interval(None, None, None, confidence, method, 0, f"no {what}")
    estimate = _checked_mean(values)
    if n < 2:
        return Interval(
            estimate, None, None, confidence, method, n, f"no interval: needs >= 2 {what}"
        )
    from scipy.special import stdtrit  # lazy: scipy costs a noticeable import

    with np.errstate(over="ignore"):  # an overflow is reported as the ValueError below
        spread = float(values.std(ddof=1))
    half_width = float(stdtrit(n - 1, confidence)) * spread / math.sqrt(n)
    if not math.isfinite(half_width):
        raise ValueError(f"{what} are too large for a finite interval")
    return Interval(estimate, estimate - half_width, estimate + half_width, confidence, method, n)


def _checked_mean(values: np.ndarray) -> float:
    with np.errstate(over="ignore"):  # an overflow is reported as the ValueError below
        mean = float(values.mean())
    if not math.isfinite(mean):
        raise ValueError("values are too large to average (the sum overflows)")
    return mean


def _finite_vector(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite (a mean of error-adjusted values has no meaning)")
    return array
