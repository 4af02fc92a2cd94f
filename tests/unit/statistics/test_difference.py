"""Intervals on the change between two runs: the exact bootstrap's law against an exact
formula and a brute-force bootstrap, coverage of a known shift by simulation, Welch against
scipy, steady throughput by batch means on simulated closed-loop runs, and the refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from aiperf.statistics import (
    Difference,
    difference_interval,
    min_samples_for_quantile,
    rate_difference,
)
from aiperf.statistics.difference import (
    MIN_REQUESTS_PER_WINDOW,
    _resampled_quantiles,
)
from tests.unit.statistics._simulation import (
    ALPHA,
    Distribution,
    allowed_excess,
    bimodal,
    lognormal,
)

N = 500


def closed_loop_ends(
    rng: np.random.Generator, requests: int, slots: int = 8, sigma: float = 0.5,
    slower: float = 1.0,
) -> np.ndarray:
    """End times of a concurrency run: each slot sends its next request when the last one
    ends, latencies lognormal (median 50 ms) times ``slower``. Slots finish one by one, so
    the run has a drain whose length is random."""
    latencies = rng.lognormal(math.log(0.05), sigma, (slots, requests // slots)) * slower
    return np.sort(np.cumsum(latencies, axis=1).ravel())


def _empirical_cdf(draws: np.ndarray, support: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.sort(draws), support, side="right") / draws.size


def test_resampled_order_statistic_has_the_exact_bootstrap_law() -> None:
    """With no interpolation (p = 0.5, n = 37: rank 19), a resample's 19th value is at most
    X(j) exactly when at least 19 of its 37 draws are among the j smallest:
    P = P(Binomial(37, j / 37) >= 19)."""
    n = 37
    values = np.sort(np.random.default_rng(3).lognormal(0.0, 1.0, n))
    draws = _resampled_quantiles(values, 0.5, 200_000, np.random.default_rng(4))
    exact = stats.binom.sf(18, n, np.arange(1, n + 1) / n)
    assert np.max(np.abs(_empirical_cdf(draws, values) - exact)) < 0.006
    # The check can fail: the neighbouring rank's law is far off.
    wrong = stats.binom.sf(17, n, np.arange(1, n + 1) / n)
    assert np.max(np.abs(_empirical_cdf(draws, values) - wrong)) > 0.05


@pytest.mark.parametrize(("n", "p"), [(37, 0.9), (37, 0.99), (200, 0.75)])
def test_interpolated_quantile_matches_a_brute_force_bootstrap(n: int, p: float) -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(0.0, 1.0, n)
    # Rounded: numpy interpolates with another formula, and an atom split over two
    # neighbouring floats would count as a difference in the distribution.
    exact = np.round(_resampled_quantiles(values, p, 100_000, rng), 9)
    brute = np.round(np.percentile(values[rng.integers(0, n, (20_000, n))], p * 100, axis=1), 9)
    support = np.unique(np.concatenate([exact, brute]))
    distance = np.max(np.abs(_empirical_cdf(exact, support) - _empirical_cdf(brute, support)))
    assert distance < 0.02  # the two-sample KS 0.1 % critical value is 0.015


def test_estimates_are_the_reported_statistics() -> None:
    rng = np.random.default_rng(6)
    before, after = rng.lognormal(3.0, 0.5, 800), rng.lognormal(3.1, 0.5, 700)
    for statistic, point in (("p50", lambda v: np.percentile(v, 50)),
                             ("p99", lambda v: np.percentile(v, 99)),
                             ("p99.9", lambda v: np.percentile(v, 99.9)),
                             ("avg", np.mean)):
        diff = difference_interval(before, after, statistic)
        assert diff.statistic == statistic
        assert diff.before == pytest.approx(point(before))
        assert diff.after == pytest.approx(point(after))
        assert diff.delta == pytest.approx(diff.after - diff.before)
        assert diff.confidence == 0.95


def test_p999_is_the_same_statistic_as_p99_9() -> None:
    rng = np.random.default_rng(7)
    before, after = rng.lognormal(3.0, 0.5, 5000), rng.lognormal(3.0, 0.5, 5000)
    a = difference_interval(before, after, "p999")
    b = difference_interval(before, after, "p99.9")
    assert (a.before, a.after, a.low, a.high) == (b.before, b.after, b.low, b.high)


def test_welch_interval_equals_scipy() -> None:
    rng = np.random.default_rng(8)
    before, after = rng.normal(10.0, 1.0, 50), rng.normal(10.5, 3.0, 80)
    diff = difference_interval(before, after, "avg", 0.9)
    expected = stats.ttest_ind(after, before, equal_var=False).confidence_interval(0.9)
    assert (diff.low, diff.high) == pytest.approx((expected.low, expected.high), rel=1e-9)
    assert "Welch" in diff.method


def test_constant_runs_give_the_exact_change() -> None:
    diff = difference_interval(np.full(10, 3.0), np.full(12, 5.0), "avg")
    assert (diff.delta, diff.low, diff.high) == (2.0, 2.0, 2.0)
    assert "no spread" in diff.method


def test_a_seed_makes_the_bootstrap_reproducible() -> None:
    rng = np.random.default_rng(9)
    before, after = rng.lognormal(3.0, 1.0, 1000), rng.lognormal(3.0, 1.0, 1000)
    first = difference_interval(before, after, "p90", seed=1)
    assert difference_interval(before, after, "p90", seed=1) == first
    other = difference_interval(before, after, "p90", seed=2)
    assert other != first
    width = first.high - first.low
    # 4000 resamples: the bounds move by a small part of the interval between seeds.
    assert abs(other.low - first.low) < 0.1 * width
    assert abs(other.high - first.high) < 0.1 * width


def _true_change(dist: Distribution, statistic: str, slower: float) -> float:
    if statistic == "avg":
        return (slower - 1.0) * dist.mean
    return (slower - 1.0) * dist.quantile(float(statistic[1:]) / 100)


@pytest.mark.parametrize("statistic", ["p50", "p99", "avg"])
@pytest.mark.parametrize("dist", [lognormal(1.0), bimodal(0.9)], ids=lambda d: d.name)
def test_interval_covers_a_known_shift(dist: Distribution, statistic: str) -> None:
    """After = before's distribution x 1.2, so the true change is 0.2 x the statistic. Each
    side of a 95 % two-sided interval may miss it at most 2.5 % of the time (plus three
    standard errors of the simulation)."""
    trials, slower = 300, 1.2
    rng = np.random.default_rng(10)
    before = dist.draw(rng, (trials, N))
    after = dist.draw(rng, (trials, N)) * slower
    truth = _true_change(dist, statistic, slower)
    diffs = [difference_interval(b, a, statistic, seed=i)
             for i, (b, a) in enumerate(zip(before, after, strict=True))]
    above = sum(d.low > truth for d in diffs) / trials
    below = sum(d.high < truth for d in diffs) / trials
    side = ALPHA / 2
    assert above <= side + allowed_excess(side, trials), (above, below)
    assert below <= side + allowed_excess(side, trials), (above, below)


def test_a_percentile_needs_the_n_that_bounds_it_in_each_run() -> None:
    need = min_samples_for_quantile(99, 0.975, "both")  # two-sided 95 %: 2.5 % a side
    rng = np.random.default_rng(11)
    enough = rng.lognormal(3.0, 1.0, need)
    short = difference_interval(enough[:-1], enough, "p99")
    assert (short.low, short.high) == (-math.inf, math.inf)
    assert f"p99 needs n >= {need} in each run" in short.method
    assert f"before n = {need - 1}" in short.method
    assert short.before == pytest.approx(np.percentile(enough[:-1], 99))
    bounded = difference_interval(enough, enough[::-1].copy(), "p99")
    assert math.isfinite(bounded.low) and math.isfinite(bounded.high)


def test_a_mean_needs_two_values_per_run() -> None:
    diff = difference_interval(np.array([1.0]), np.array([1.0, 2.0, 3.0]), "avg")
    assert (diff.low, diff.high) == (-math.inf, math.inf)
    assert "needs >= 2 values per run" in diff.method
    empty = difference_interval(np.empty(0), np.array([1.0, 2.0]), "p50")
    assert math.isnan(empty.before) and empty.after == 1.5
    assert (empty.low, empty.high) == (-math.inf, math.inf)


@pytest.mark.parametrize("statistic", ["max", "std", "rate", "p100", "P99", ""])
def test_unknown_statistics_are_refused(statistic: str) -> None:
    with pytest.raises(ValueError, match="use 'avg' or a percentile"):
        difference_interval(np.ones(10), np.ones(10), statistic)


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan]), np.array([1.0, np.inf]),
                                 np.ones((2, 2))])
def test_values_must_be_finite_and_flat(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"finite|one-dimensional"):
        difference_interval(bad, np.ones(10), "p50")


def test_settings_are_checked() -> None:
    values = np.arange(100.0)
    with pytest.raises(ValueError, match="confidence"):
        difference_interval(values, values, "p50", 1.0)
    with pytest.raises(ValueError, match="resamples"):
        difference_interval(values, values, "p50", resamples=10)
    with pytest.raises(ValueError, match="windows"):
        rate_difference(values, values, windows=2)
    with pytest.raises(ValueError, match="weights"):
        rate_difference(values, values, before_weights=np.ones(3))


def test_relative_is_the_change_over_before() -> None:
    diff = Difference("p50", 200.0, 250.0, 50.0, 20.0, 80.0, 0.95, "m")
    assert diff.relative == (0.25, 0.1, 0.4)
    zero = Difference("p50", 0.0, 1.0, 1.0, -1.0, 2.0, 0.95, "m")
    assert zero.relative == (math.inf, -math.inf, math.inf)
    assert math.isnan(Difference("p50", 0.0, 0.0, 0.0, 0.0, 0.0, 0.95, "m").relative[0])


def test_steady_rate_is_completions_per_second_in_the_middle_of_the_run() -> None:
    ends = np.arange(1, 1001) / 100.0  # 100 completions a second for 10 s
    diff = rate_difference(ends, ends)
    assert diff.before == pytest.approx(100.0, rel=0.01)
    assert diff.delta == 0.0
    assert diff.low <= 0.0 <= diff.high
    assert "middle 90 %" in diff.method and "(10 + 10 windows)" in diff.method
    tokens = rate_difference(ends, ends, before_weights=np.full(1000, 3.0),
                             after_weights=np.full(1000, 6.0))
    assert tokens.before == pytest.approx(300.0, rel=0.01)
    assert tokens.after == pytest.approx(600.0, rel=0.01)
    assert tokens.low > 0.0


def test_a_rate_needs_enough_requests_for_its_windows() -> None:
    need = 5 * MIN_REQUESTS_PER_WINDOW
    few = np.arange(1, need + 1, dtype=float)  # the middle 90 % holds fewer than `need`
    diff = rate_difference(few, np.arange(1, 1001, dtype=float))
    assert (diff.low, diff.high) == (-math.inf, math.inf)
    assert f"needs >= {need}" in diff.method and "the before run" in diff.method
    once = rate_difference(np.ones(500), np.arange(1, 501, dtype=float))
    assert "end all at once" in once.method
    assert "1 request end times" in rate_difference(np.ones(1), np.ones(500)).method


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_unchanged_throughput_is_rarely_flagged(sigma: float) -> None:
    trials = 400
    rng = np.random.default_rng(12)
    diffs = [rate_difference(closed_loop_ends(rng, N, sigma=sigma),
                             closed_loop_ends(rng, N, sigma=sigma)) for _ in range(trials)]
    flagged = sum(d.low > 0 or d.high < 0 for d in diffs) / trials
    assert flagged <= ALPHA + allowed_excess(ALPHA, trials)


def test_a_server_20_percent_slower_is_found_in_its_throughput() -> None:
    """Closed loop, 8 slots, 500 requests, lognormal sigma 0.5: measured power 0.98 (1000
    trials)."""
    trials = 200
    rng = np.random.default_rng(13)
    diffs = [rate_difference(closed_loop_ends(rng, N), closed_loop_ends(rng, N, slower=1.2))
             for _ in range(trials)]
    assert sum(d.high < 0 for d in diffs) / trials >= 0.95
    assert all(d.low < 0 for d in diffs)  # never the wrong way
