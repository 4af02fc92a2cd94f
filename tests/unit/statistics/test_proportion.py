"""Clopper-Pearson bounds: equal to scipy's exact interval, and their coverage computed
exactly (a sum over every possible count, no simulation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from aiperf.statistics import decide, proportion_interval


@pytest.mark.parametrize(("k", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (3, 1000), (0, 1)])
def test_each_bound_equals_scipys_exact_interval_at_twice_the_alpha(k: int, n: int) -> None:
    # scipy's two-sided interval at 90 % is the pair of one-sided 95 % bounds.
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.90, method="exact")
    result = proportion_interval(k, n, 0.95)
    assert result.low == pytest.approx(expected.low, abs=1e-12)
    assert result.high == pytest.approx(expected.high, abs=1e-12)
    assert result.estimate == k / n


@pytest.mark.parametrize("n", [10, 50, 200, 1000])
def test_each_bound_covers_at_least_its_confidence_for_every_true_proportion(n: int) -> None:
    confidence = 0.95
    counts = np.arange(n + 1)
    bounds = [proportion_interval(int(k), n, confidence) for k in counts]
    low = np.array([b.low for b in bounds])
    high = np.array([b.high for b in bounds])
    for p in np.concatenate([np.linspace(0.0005, 0.9995, 97), [0.001, 0.01, 0.05]]):
        pmf = stats.binom.pmf(counts, n, p)
        assert pmf[high >= p].sum() >= confidence - 1e-9, p
        assert pmf[low <= p].sum() >= confidence - 1e-9, p


def test_an_error_rate_objective_decides_only_when_the_counts_say_so() -> None:
    assert decide(proportion_interval(0, 500), "<=", 0.01) == "PASS"  # high = 0.0060
    assert decide(proportion_interval(0, 100), "<=", 0.01) == "INCONCLUSIVE"  # high = 0.0295
    assert decide(proportion_interval(20, 500), "<=", 0.01) == "FAIL"
    assert proportion_interval(0, 0).estimate is None


@pytest.mark.parametrize(("k", "n"), [(-1, 10), (11, 10), (1.5, 10), (1, -1), (True, 2)])
def test_impossible_counts_are_refused(k: object, n: object) -> None:
    with pytest.raises(ValueError):
        proportion_interval(k, n)  # type: ignore[arg-type]
