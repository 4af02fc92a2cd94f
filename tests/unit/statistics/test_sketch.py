"""Sketch mode's quantile sketch against the exact statistics it replaces: percentiles within
the stated relative error, exact moments, the library's own buckets, the wire format, and
intervals that cover by simulation and never decide where the exact interval would not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ddsketch import DDSketch

from aiperf.metrics.stats import summarize, summarize_adjusted
from aiperf.statistics import (
    decide,
    mean_interval,
    quantile_interval,
    sketch_mean_interval,
    sketch_quantile_interval,
)
from aiperf.statistics.sketch import (
    MetricSketch,
    adjusted_quantile,
    sketch_summary,
    sketch_summary_adjusted,
)
from tests.unit.statistics._simulation import (
    CONFIDENCE,
    allowed_excess,
    bimodal,
    lognormal,
    quantile_rates,
)

QS = np.concatenate([[0.0, 0.1, 0.5], np.arange(1.0, 100.0, 1.0), [99.5, 99.9, 99.99, 100.0]])
ACCURACIES = [0.05, 0.01, 0.005]
# Feeding in uneven batches exercises both the one-value-at-a-time path (< 32 values) and the
# vectorized one, as the records manager's batches vary.
BATCHES = [1, 7, 31, 32, 256, 1000, 4096]


def lognormal_data(seed: int, n: int = 50_000, sigma: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(3.0, sigma, n)


def bimodal_data(seed: int, n: int = 50_000) -> np.ndarray:
    return bimodal().draw(np.random.default_rng(seed), (1, n))[0]


def sketch_of(values: np.ndarray, accuracy: float = 0.01, batch: int | None = None
              ) -> MetricSketch:
    sketch = MetricSketch(accuracy)
    if batch is None:
        sketch.add(values)
        return sketch
    for start in range(0, values.size, batch):
        sketch.add(values[start:start + batch])
    return sketch


def fed_in_uneven_batches(values: np.ndarray, accuracy: float, seed: int) -> MetricSketch:
    rng = np.random.default_rng(seed)
    sketch, start = MetricSketch(accuracy), 0
    while start < values.size:
        size = int(rng.choice(BATCHES))
        sketch.add(values[start:start + size])
        start += size
    return sketch


DATASETS = {
    "lognormal(sigma=1)": lambda: lognormal_data(11),
    "lognormal(sigma=2)": lambda: lognormal_data(12, sigma=2.0),
    "bimodal": lambda: bimodal_data(13),
}


@pytest.mark.parametrize("accuracy", ACCURACIES)
@pytest.mark.parametrize("name", list(DATASETS))
def test_percentiles_within_the_relative_accuracy_of_numpys(name: str, accuracy: float) -> None:
    values = DATASETS[name]()
    sketch = fed_in_uneven_batches(values, accuracy, seed=1)
    exact = np.percentile(values, QS)
    estimated = np.array([sketch.quantile(q) for q in QS])
    error = np.abs(estimated - exact) / np.abs(exact)
    assert error.max() <= accuracy * (1 + 1e-9), (name, QS[error.argmax()], error.max())
    # The bound is not met by an overly coarse sketch that happens to be right: most
    # quantiles move when the accuracy is 5x coarser.
    assert error.mean() > accuracy / 50


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_order_statistic_is_within_the_relative_accuracy(name: str) -> None:
    values = DATASETS[name]()[:5_000]
    sketch = sketch_of(values, 0.01, batch=100)
    ordered = np.sort(values)
    got = np.array([sketch.value_at_rank(r) for r in range(1, values.size + 1)])
    assert np.all(np.abs(got - ordered) <= 0.01 * np.abs(ordered) * (1 + 1e-9))
    assert got[0] == ordered[0] and got[-1] == ordered[-1]  # min and max are kept exactly


def test_widened_bounds_contain_every_value_the_sketch_could_stand_for() -> None:
    """At a bucket's top edge the representative is x * (1 - alpha): multiplying it by
    (1 + alpha) would fall short of x; the widened bound does not."""
    alpha = 0.01
    gamma = (1 + alpha) / (1 - alpha)
    edges = gamma ** np.arange(100, 110, dtype=np.float64)
    for signed in (edges, -edges):
        values = np.repeat(signed, 50)  # every order statistic on a bucket edge
        sketch = sketch_of(values, alpha)
        for q in (10, 50, 90):
            exact = quantile_interval(values, q)
            sketched = sketch_quantile_interval(sketch, q)
            assert sketched.low is not None and exact.low is not None
            assert sketched.high is not None and exact.high is not None
            assert sketched.low <= exact.low and sketched.high >= exact.high, (q, signed[0])


def test_zeros_and_negative_values_keep_the_guarantee() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([-rng.lognormal(1.0, 1.0, 3000), np.zeros(500),
                             rng.lognormal(2.0, 0.5, 3000)])
    rng.shuffle(values)
    sketch = sketch_of(values, 0.02, batch=333)
    ordered = np.sort(values)
    got = np.array([sketch.value_at_rank(r) for r in range(1, values.size + 1)])
    assert np.all(np.abs(got - ordered) <= 0.02 * np.abs(ordered) * (1 + 1e-9))


def test_batched_buckets_are_the_librarys_own() -> None:
    """The vectorized add puts every value in the bucket DDSketch.add would."""
    values = np.concatenate([lognormal_data(21, 20_000, 2.0), bimodal_data(22, 20_000),
                             np.array([1.0, 2.0, 4.0, 1e-3, 1e6])])  # powers of 2: edges
    sketch = fed_in_uneven_batches(values, 0.01, seed=2)
    reference = DDSketch(0.01)
    for value in values.tolist():
        reference.add(value)
    mine = sketch._positive
    theirs = reference._store
    assert (mine.min_key, mine.max_key) == (theirs.min_key, theirs.max_key)
    assert (mine.bins[mine.min_key - mine.offset:mine.max_key - mine.offset + 1]
            == theirs.bins[theirs.min_key - theirs.offset:theirs.max_key - theirs.offset + 1])


@pytest.mark.parametrize("name", list(DATASETS))
def test_count_sum_min_max_mean_std_are_exact(name: str) -> None:
    values = DATASETS[name]()
    sketch = fed_in_uneven_batches(values, 0.01, seed=3)
    assert sketch.count == values.size
    assert sketch.min == values.min() and sketch.max == values.max()
    assert sketch.sum == pytest.approx(values.sum(), rel=1e-12)
    assert sketch.mean == pytest.approx(values.mean(), rel=1e-12)
    assert sketch.std() == pytest.approx(values.std(), rel=1e-9)
    assert sketch.std(ddof=1) == pytest.approx(values.std(ddof=1), rel=1e-9)
    centred = values - values.mean()
    skewness = float(np.mean(centred**3) / np.mean(centred**2) ** 1.5)
    assert sketch.skewness == pytest.approx(skewness, rel=1e-6)


def test_merge_equals_one_sketch_of_all_the_values() -> None:
    a, b = lognormal_data(31, 30_000), bimodal_data(32, 20_000)
    merged = sketch_of(a, batch=512)
    merged.merge(sketch_of(b, batch=100))
    whole = sketch_of(np.concatenate([a, b]), batch=777)
    assert [merged.quantile(q) for q in QS] == [whole.quantile(q) for q in QS]
    assert merged.count == whole.count and merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.std() == pytest.approx(whole.std(), rel=1e-9)
    empty = MetricSketch()
    empty.merge(whole)
    assert [empty.quantile(q) for q in QS] == [whole.quantile(q) for q in QS]
    with pytest.raises(ValueError, match="relative accuracy"):
        whole.merge(MetricSketch(0.02))


def test_bytes_round_trip_and_the_size_does_not_grow_with_the_run() -> None:
    small = sketch_of(lognormal_data(41, 10_000), batch=256)
    large = sketch_of(lognormal_data(42, 1_000_000), batch=4096)
    for sketch in (small, large, MetricSketch(0.03)):
        again = MetricSketch.from_bytes(sketch.to_bytes())
        assert again == sketch
        assert again.relative_accuracy == sketch.relative_accuracy
        assert [again.quantile(q) for q in QS] == [sketch.quantile(q) for q in QS] or \
            sketch.count == 0
    # 100x the values, a few more buckets for the longer tails: kilobytes, not megabytes.
    assert len(large.to_bytes()) < 2 * len(small.to_bytes()) < 16_000
    with pytest.raises(ValueError, match="format"):
        MetricSketch.from_bytes(b"\x81\xa1v\x63")


def test_empty_and_invalid_input() -> None:
    sketch = MetricSketch()
    assert sketch.count == 0 and math.isnan(sketch.quantile(50)) and math.isnan(sketch.mean)
    assert sketch_summary(sketch, "ms") == {"unit": "ms", "count": 0}
    sketch.add(np.array([]))
    assert sketch.count == 0
    with pytest.raises(ValueError, match="finite"):
        sketch.add(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="finite"):
        sketch.add(np.array([np.nan]))
    with pytest.raises(ValueError, match="relative_accuracy"):
        MetricSketch(0.0)
    sketch.add(np.array([3.0]))
    with pytest.raises(ValueError, match="rank"):
        sketch.value_at_rank(2)
    with pytest.raises(ValueError, match="percentile"):
        sketch.quantile(101)


def test_summary_has_summarizes_keys_within_the_accuracy() -> None:
    values = lognormal_data(51)
    exact = summarize(values, "ms")
    sketched = sketch_summary(sketch_of(values, 0.01, batch=256), "ms")
    assert list(sketched) == list(exact)
    for key in ("avg", "min", "max", "std", "sum", "count"):
        assert sketched[key] == pytest.approx(exact[key], rel=1e-9)
    for key in (k for k in exact if k.startswith("p")):
        assert sketched[key] == pytest.approx(exact[key], rel=0.01)


def test_adjusted_summary_counts_failures_as_infinitely_slow() -> None:
    values = lognormal_data(52, 2_000)
    for failures in (0, 15, 150, 5_000):
        exact = summarize_adjusted(values, failures, "ms")
        sketched = sketch_summary_adjusted(sketch_of(values), failures, "ms")
        assert list(sketched) == list(exact)
        assert sketched["count"] == exact["count"]
        for key in (k for k in exact if k.startswith("p")):
            if exact[key] is None:
                assert sketched[key] is None, (failures, key)
            else:
                assert sketched[key] == pytest.approx(exact[key], rel=0.01), (failures, key)
    assert adjusted_quantile(MetricSketch(), 0, 50) != adjusted_quantile(MetricSketch(), 0, 50)


@pytest.mark.parametrize("q", [50, 90, 99])
@pytest.mark.parametrize("name", list(DATASETS))
def test_sketch_interval_contains_the_exact_interval(name: str, q: float) -> None:
    """So every PASS or FAIL from a sketch is one the exact values would also give."""
    values = DATASETS[name]()[:3_000]
    sketch = sketch_of(values, 0.01, batch=64)
    exact = quantile_interval(values, q)
    sketched = sketch_quantile_interval(sketch, q)
    assert sketched.n == exact.n
    assert sketched.low is not None and exact.low is not None
    assert sketched.high is not None and exact.high is not None
    assert sketched.low <= exact.low and sketched.high >= exact.high
    assert sketched.estimate == pytest.approx(exact.estimate, rel=0.01)
    assert "relative accuracy 1 %" in sketched.method
    thresholds = np.linspace(exact.low * 0.9, exact.high * 1.1, 201)
    for op in ("<", "<=", ">", ">="):
        for threshold in thresholds:
            verdict = decide(sketched, op, float(threshold))
            if verdict != "INCONCLUSIVE":
                assert decide(exact, op, float(threshold)) == verdict, (op, threshold)


def test_a_threshold_within_the_widening_is_inconclusive() -> None:
    values = lognormal_data(61, 5_000)
    sketch = sketch_of(values, 0.01)
    interval = sketch_quantile_interval(sketch, 99)
    assert interval.high is not None and interval.low is not None
    raw_high = interval.high * (1 - 0.01)  # the order statistic as the sketch holds it
    exact_high = quantile_interval(values, 99).high
    assert exact_high is not None
    # Thresholds past the sketch's value of the bound but within its rounding: the exact
    # values might decide them either way, so the sketch decides none.
    for threshold in np.linspace(raw_high * 1.0001, interval.high, 20):
        assert decide(interval, "<", float(threshold)) == "INCONCLUSIVE"
    assert decide(interval, "<", interval.high * 1.0001) == "PASS"
    assert decide(interval, "<", interval.low) == "FAIL"


def test_error_adjusted_interval_ranks_failures_last() -> None:
    values = lognormal_data(62, 1_000)
    failures = 30
    adjusted = np.concatenate([values, np.full(failures, np.inf)])
    exact = quantile_interval(adjusted, 99)
    sketched = sketch_quantile_interval(sketch_of(values), 99, failures=failures)
    assert sketched.n == exact.n == 1_030
    assert exact.high == math.inf and sketched.high == math.inf
    assert sketched.low is not None and exact.low is not None and sketched.low <= exact.low
    assert sketched.note is not None and "infinitely slow" in sketched.note
    assert sketched.estimate == exact.estimate == math.inf
    low = sketch_quantile_interval(sketch_of(values), 50, failures=failures)
    assert low.estimate == pytest.approx(quantile_interval(adjusted, 50).estimate, rel=0.01)


def test_sketch_mean_interval_is_mean_interval() -> None:
    """The moments are exact, so the mean's bounds are the ones the values give."""
    for values in (lognormal_data(71, 4_000), bimodal_data(72, 4_000), np.array([2.0, 5.0]),
                   lognormal_data(73, 40, 1.5)):
        exact = mean_interval(values)
        sketched = sketch_mean_interval(sketch_of(values, batch=100))
        for got, want in ((sketched.estimate, exact.estimate), (sketched.low, exact.low),
                          (sketched.high, exact.high)):
            assert (got is None) == (want is None)
            if got is not None:
                assert got == pytest.approx(want, rel=1e-9)
        assert sketched.note == exact.note
        assert "exact moments" in sketched.method
    assert sketch_mean_interval(MetricSketch()).n == 0


@pytest.mark.parametrize("q", [50, 90, 99])
@pytest.mark.parametrize("dist", [lognormal(1.0), bimodal()], ids=lambda d: d.name)
def test_sketch_intervals_cover_by_simulation(dist: object, q: float) -> None:
    """Like the exact intervals' simulation: each one-sided bound covers the true quantile at
    least at its confidence, and no verdict is a false PASS or FAIL beyond alpha."""
    trials, n = 400, 1_000

    def interval(row: np.ndarray, quantile: float, confidence: float) -> object:
        return sketch_quantile_interval(sketch_of(row, 0.01), quantile, confidence)

    rates = quantile_rates(dist, n, q, trials, seed=int(q) + 7, interval=interval)  # type: ignore[arg-type]
    floor = CONFIDENCE - allowed_excess(1 - CONFIDENCE, trials)
    assert rates.upper_coverage >= floor
    assert rates.lower_coverage >= floor
    limit = (1 - CONFIDENCE) + allowed_excess(1 - CONFIDENCE, trials)
    assert max(rates.false_pass.values()) <= limit
    assert max(rates.false_fail.values()) <= limit
    # Not vacuous: on the same samples, thresholds away from the truth are decided nearly as
    # often as from the exact values (the 1 % widening costs some power where the threshold
    # sits near a bound: bimodal p90 at 0.75x the truth, 35 % -> 25 % decided).
    exact = quantile_rates(dist, n, q, trials, seed=int(q) + 7)  # type: ignore[arg-type]
    for (op, factor), rate in rates.inconclusive.items():
        if factor != 1.0:
            assert rate <= exact.inconclusive[op, factor] + 0.15, (op, factor)
