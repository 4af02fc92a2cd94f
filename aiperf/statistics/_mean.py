"""Student-t bounds on a mean: of requests, of time windows (batch means), of repeated runs.

The t-interval is exact for normal data and, by the central limit theorem, close for a mean of
many independent values. It is chosen over a bootstrap because it is deterministic (a verdict
must not depend on a random seed) and costs O(n). Its weakness is skewed data at small n: for
right-skewed latencies the upper bound is too low. docs/statistics.md gives the coverage
measured for lognormal data and the n it needs.
"""

from __future__ import annotations

import math

import numpy as np

from aiperf.statistics._interval import Interval, check_confidence

MIN_WINDOWS = 5


def mean_interval(values: np.ndarray, confidence: float = 0.95) -> Interval:
    """t-interval on the mean of independent per-request values."""
    return _t_interval(values, confidence, "t-interval (Student) on the mean", "values")


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
    estimate = float(values.mean())
    if n < 2:
        return Interval(
            estimate, None, None, confidence, method, n, f"no interval: needs >= 2 {what}"
        )
    from scipy.special import stdtrit  # lazy: scipy costs a noticeable import

    half_width = float(stdtrit(n - 1, confidence)) * float(values.std(ddof=1)) / math.sqrt(n)
    return Interval(estimate, estimate - half_width, estimate + half_width, confidence, method, n)


def _finite_vector(values: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} must be finite (a mean of error-adjusted values has no meaning)")
    return array
