"""Order-statistic bounds on a quantile: ranks against exact binomial sums, the sample sizes
that make a bound exist, and the interval built from real values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from aiperf.statistics import (
    decide,
    min_samples_for_quantile,
    order_statistic_ranks,
    quantile_interval,
    requests_to_decide,
)

NS = [1, 2, 5, 10, 29, 30, 58, 59, 100, 298, 299, 300, 1000, 2995, 2996]
QS = [1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9]
CONFIDENCES = [0.5, 0.8, 0.9, 0.95, 0.99]
ROUNDING = 1e-12  # exact ties (P = 0.5 by symmetry) must not flip on the last bit


def exact_upper_rank(n: int, p: float, confidence: float) -> int | None:
    """Least k with P(Binomial(n, p) <= k - 1) >= confidence, by listing every k."""
    cdf = binom.cdf(np.arange(n), n, p)  # cdf[k - 1] for k = 1..n
    qualifying = np.flatnonzero(cdf >= confidence - ROUNDING)
    return int(qualifying[0]) + 1 if qualifying.size else None


def exact_lower_rank(n: int, p: float, confidence: float) -> int | None:
    """Greatest j with P(Binomial(n, p) >= j) >= confidence, by listing every j."""
    survival = binom.sf(np.arange(n), n, p)  # survival[j - 1] = P(X >= j) for j = 1..n
    qualifying = np.flatnonzero(survival >= confidence - ROUNDING)
    return int(qualifying[-1]) + 1 if qualifying.size else None


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_ranks_equal_exact_binomial_computations(confidence: float) -> None:
    for n in NS:
        for q in QS:
            lower, upper = order_statistic_ranks(n, q, confidence)
            assert upper == exact_upper_rank(n, q / 100, confidence), (n, q)
            assert lower == exact_lower_rank(n, q / 100, confidence), (n, q)
            if lower is not None and upper is not None:
                assert lower <= upper


def test_p99_at_95_percent_needs_299_values_for_an_upper_bound() -> None:
    assert min_samples_for_quantile(99, 0.95, "upper") == 299
    assert order_statistic_ranks(298, 99, 0.95)[1] is None
    assert order_statistic_ranks(299, 99, 0.95)[1] == 299  # the maximum
    assert min_samples_for_quantile(99.9, 0.95) == 2995
    assert min_samples_for_quantile(50, 0.95, "both") == 5
    assert min_samples_for_quantile(1, 0.95, "lower") == 299
    assert min_samples_for_quantile(99, 0.95, "lower") == 1


@pytest.mark.parametrize("confidence", CONFIDENCES)
def test_min_samples_is_the_first_n_with_the_bound(confidence: float) -> None:
    for q in QS:
        for side, index in (("lower", 0), ("upper", 1)):
            need = min_samples_for_quantile(q, confidence, side)
            assert order_statistic_ranks(need, q, confidence)[index] is not None, (q, side)
            if need > 1:
                assert order_statistic_ranks(need - 1, q, confidence)[index] is None, (q, side)
        both = min_samples_for_quantile(q, confidence, "both")
        assert None not in order_statistic_ranks(both, q, confidence)


def test_a_missing_bound_says_which_and_the_n_it_needs() -> None:
    values = np.arange(200, dtype=np.float64)
    result = quantile_interval(values, 99)
    assert result.high is None and result.low is not None
    assert result.note == "p99 needs n >= 299 for an upper bound at 95 % (n = 200)"
    assert decide(result, "<", 1e9) == "INCONCLUSIVE"  # no upper bound: can never PASS
    assert decide(result, "<", 1.0) == "FAIL"  # the lower bound alone breaks it
    tiny = quantile_interval(np.array([1.0, 2.0]), 50)
    assert tiny.low is None and tiny.high is None
    assert "n >= 5 for an upper bound and n >= 5 for a lower bound" in (tiny.note or "")
    assert quantile_interval(np.arange(1000.0), 99).note is None


def test_bounds_are_the_ranked_values_and_the_estimate_is_numpys_percentile() -> None:
    rng = np.random.default_rng(7)
    values = rng.lognormal(3.0, 0.8, 1000)
    ordered = np.sort(values)
    for q in (50, 90, 99):
        lower, upper = order_statistic_ranks(1000, q)
        result = quantile_interval(values, q)
        assert result.low == ordered[lower - 1] and result.high == ordered[upper - 1]
        assert result.estimate == np.percentile(values, q)
        assert result.n == 1000 and result.confidence == 0.95


def test_error_adjusted_values_use_nearest_and_infinite_bounds() -> None:
    values = np.concatenate([np.arange(1.0, 991.0), np.full(10, np.inf)])  # 1 % failed
    result = quantile_interval(values, 99)
    assert result.estimate == np.percentile(values, 99, method="nearest")
    assert result.high == np.inf and np.isfinite(result.low)
    assert decide(result, "<", 1e12) == "INCONCLUSIVE"
    assert "infinitely slow" in (result.note or "")
    mostly_failed = quantile_interval(np.concatenate([np.ones(900), np.full(100, np.inf)]), 99)
    assert mostly_failed.low == np.inf and decide(mostly_failed, "<", 1e12) == "FAIL"
    assert mostly_failed.to_dict()["interval"] == [None, None]


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\)"):
        quantile_interval(np.ones(10), 100)
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\)"):
        min_samples_for_quantile(0)
    with pytest.raises(ValueError, match="confidence"):
        quantile_interval(np.ones(10), 50, confidence=1.0)
    with pytest.raises(ValueError, match="NaN"):
        quantile_interval(np.array([1.0, np.nan]), 50)
    with pytest.raises(ValueError, match="one-dimensional"):
        quantile_interval(np.ones((2, 2)), 50)
    with pytest.raises(ValueError, match="side"):
        min_samples_for_quantile(99, 0.95, "two")
    empty = quantile_interval(np.array([]), 99)
    assert empty.n == 0 and empty.estimate is None and empty.note == "no values"


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=400
    ),
    q=st.floats(min_value=0.1, max_value=99.9),
    confidence=st.floats(min_value=0.5, max_value=0.999),
)
def test_bounds_are_ordered_observed_values(
    values: list[float], q: float, confidence: float
) -> None:
    # The linear estimate may lie just outside a bound at tiny n (p1 of 2 values: the upper
    # bound is the minimum, the estimate 1 % above it), so only the bounds are ordered.
    result = quantile_interval(np.array(values), q, confidence)
    assert result.n == len(values)
    if result.low is not None and result.high is not None:
        assert result.low <= result.high
    for bound in (result.low, result.high):
        assert bound is None or bound in values


def test_requests_to_decide_is_where_the_same_shares_would_decide() -> None:
    values = np.arange(1.0, 201.0)  # p99 estimate 198.0; 2 of 200 values above 198.5
    assert requests_to_decide(values, 99, "<", 198.5) is None  # share below = exactly 0.99
    n = requests_to_decide(values, 99, "<", 250.0)  # every value below: the maximum must bound
    assert n == 299
    lower, upper = order_statistic_ranks(n, 99)
    assert upper is not None and upper <= n
    n_fail = requests_to_decide(values, 99, "<", 150.0)  # 25 % above: decided now
    assert n_fail == 200 and decide(quantile_interval(values, 99), "<", 150.0) == "FAIL"
    # Where 1.5 % lies above the threshold, a p99 "<" objective FAILs once the lower bound
    # clears it; the hint must agree with the ranks at the n it names.
    shares = np.concatenate([np.zeros(985), np.ones(15)])
    n = requests_to_decide(shares, 99, "<", 0.5)
    assert n is not None and n > 1000
    lower, _ = order_statistic_ranks(n, 99)
    assert lower is not None and int(0.985 * n) <= lower - 1
    lower_before, _ = order_statistic_ranks(n - 1, 99)
    assert lower_before is None or int(0.985 * (n - 1)) > lower_before - 1
    assert requests_to_decide(np.array([]), 99, "<", 1.0) is None
    with pytest.raises(ValueError, match="unknown operator"):
        requests_to_decide(values, 99, "!=", 1.0)
