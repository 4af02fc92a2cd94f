"""t-based bounds: per-request means, batch means over time windows, across repeated runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from aiperf.statistics import (
    MIN_WINDOWS,
    across_runs_interval,
    batch_means_interval,
    decide,
    mean_interval,
)
from tests.unit.statistics._simulation import ALPHA, allowed_excess, coverage

TRIALS = 2000
COVERAGE_FLOOR = 1 - ALPHA - allowed_excess(ALPHA, TRIALS)


def test_across_runs_is_the_textbook_one_sided_t_interval() -> None:
    runs = np.array([212.0, 220.5, 205.1, 230.2, 215.0])
    result = across_runs_interval(runs, 0.95)
    half = stats.t.ppf(0.95, 4) * runs.std(ddof=1) / math.sqrt(5)
    assert result.estimate == pytest.approx(runs.mean())
    assert result.low == pytest.approx(runs.mean() - half, rel=1e-12)
    assert result.high == pytest.approx(runs.mean() + half, rel=1e-12)
    assert (result.n, result.method) == (5, "t over 5 runs")


def test_mean_interval_on_symmetric_data_is_the_t_interval() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0] * 10)  # skewness exactly 0
    result = mean_interval(values)
    half = stats.t.ppf(0.95, 49) * values.std(ddof=1) / math.sqrt(50)
    assert result.low == pytest.approx(3.0 - half) and result.high == pytest.approx(3.0 + half)
    assert result.note is None


def test_mean_interval_on_skewed_data_shifts_toward_the_tail() -> None:
    values = np.random.default_rng(2).lognormal(0.0, 1.0, 5000)
    corrected = mean_interval(values)
    plain = across_runs_interval(values)
    assert corrected.high is not None and corrected.low is not None
    assert corrected.high > plain.high and corrected.low > plain.low
    assert corrected.estimate == pytest.approx(values.mean())


def test_a_small_skewed_sample_withholds_the_tail_side_bound_and_says_why() -> None:
    values = np.random.default_rng(3).lognormal(0.0, 1.0, 100)
    result = mean_interval(values)
    assert result.high is None and result.low is not None
    assert result.note is not None and result.note.startswith("no upper bound: skewness")
    assert decide(result, "<", 1e9) == "INCONCLUSIVE"
    assert decide(result, "<", 0.01) == "FAIL"
    left = mean_interval(-values)
    assert left.low is None and left.high is not None


def test_too_few_values_or_windows_give_a_point_estimate_and_a_note() -> None:
    single = mean_interval(np.array([4.0]))
    assert (single.estimate, single.low, single.high) == (4.0, None, None)
    assert single.note == "no interval: needs >= 2 values"
    assert across_runs_interval(np.array([4.0])).note == "no interval: needs >= 2 runs"
    few = batch_means_interval(np.arange(MIN_WINDOWS - 1, dtype=float))
    assert few.low is None and few.high is None
    assert few.note == "no interval: fewer than 5 windows"
    assert decide(few, "<", 1e9) == "INCONCLUSIVE"
    enough = batch_means_interval(np.arange(MIN_WINDOWS, dtype=float))
    assert enough.low is not None and enough.method == "batch means (t over 5 windows)"
    empty = mean_interval(np.array([]))
    assert empty.n == 0 and empty.estimate is None
    constant = mean_interval(np.full(40, 7.0))
    assert (constant.low, constant.high) == (7.0, 7.0)
    few_constant = mean_interval(np.full(10, 7.0))  # too few to trust a zero spread upward
    assert (few_constant.low, few_constant.high) == (7.0, None)


def test_huge_values_give_a_clear_error_or_a_finite_interval() -> None:
    big = np.array([1e300, 2e300, 3e300] * 20)
    result = mean_interval(big)
    assert result.low is not None and result.high is not None
    assert result.low <= 2e300 <= result.high
    with pytest.raises(ValueError, match="too large"):
        mean_interval(np.array([1.7e308, 1.7e308, 1.0]))
    with pytest.raises(ValueError, match="too large"):
        across_runs_interval(np.array([1.7e308, -1.7e308]))


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), min_size=2, max_size=300
    ),
    # Near 0.5 Hall's bias term (skewness / 6n) can move both bounds past the mean.
    confidence=st.floats(min_value=0.8, max_value=0.999),
)
def test_any_finite_sample_gives_ordered_bounds_around_its_mean(
    values: list[float], confidence: float
) -> None:
    result = mean_interval(np.array(values), confidence)
    assert result.estimate == pytest.approx(np.mean(values), rel=1e-9, abs=1e-6)
    tolerance = 1e-9 * max(1.0, max(abs(v) for v in values))
    if result.low is not None:
        assert math.isfinite(result.low) and result.low <= result.estimate + tolerance
    if result.high is not None:
        assert math.isfinite(result.high) and result.high >= result.estimate - tolerance


@pytest.mark.parametrize(
    "call", [mean_interval, batch_means_interval, across_runs_interval], ids=lambda c: c.__name__
)
def test_non_finite_values_are_refused(call: object) -> None:
    for bad in (np.array([1.0, np.inf, 2.0]), np.array([1.0, np.nan])):
        with pytest.raises(ValueError, match="finite"):
            call(bad)  # type: ignore[operator]
    with pytest.raises(ValueError, match="one-dimensional"):
        call(np.ones((3, 3)))  # type: ignore[operator]


def test_batch_means_cover_the_mean_of_an_autocorrelated_series() -> None:
    """Request latencies drift together (queues); windows long against the correlation time
    are nearly independent, which is what the batch-means interval relies on."""
    from scipy.signal import lfilter

    phi, n, windows, true_mean = 0.9, 2000, 10, 100.0
    noise = np.random.default_rng(11).normal(0.0, 1.0, (TRIALS, n))
    series = true_mean + lfilter([1.0], [1.0, -phi], noise, axis=1)  # AR(1), mean 100
    window_means = series.reshape(TRIALS, windows, n // windows).mean(axis=2)
    intervals = [batch_means_interval(row) for row in window_means]
    upper, lower, both = coverage(intervals, true_mean)
    assert upper >= COVERAGE_FLOOR and lower >= COVERAGE_FLOOR
    assert both >= 1 - 2 * ALPHA - allowed_excess(2 * ALPHA, TRIALS)
    # Power check: the naive t-interval over all 2000 correlated values under-covers badly.
    naive = coverage([across_runs_interval(row) for row in series[:500]], true_mean)
    assert naive[2] < 0.6


@pytest.mark.parametrize("runs", [2, 3, 5, 10])
def test_across_runs_covers_a_machine_that_is_slower_some_hours(runs: int) -> None:
    """Each run's p99 = the true value + this hour's slowdown (normal, 5 %) + sampling noise."""
    rng = np.random.default_rng(runs)
    true_value = 200.0
    per_run = true_value * (1 + rng.normal(0, 0.05, (TRIALS, runs))) + rng.normal(
        0, 3.0, (TRIALS, runs)
    )
    upper, lower, _ = coverage([across_runs_interval(row) for row in per_run], true_value)
    assert upper >= COVERAGE_FLOOR and lower >= COVERAGE_FLOOR
