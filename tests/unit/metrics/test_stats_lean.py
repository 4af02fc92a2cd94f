"""Statistics of a large integer column without a float64 copy (``summarize_scaled``):
the percentiles, min and max are those of numpy on the float64 values bit for bit, the
mean, std and sum equal to rounding; ``order_statistics`` is exact for any ranks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from aiperf.metrics import stats
from aiperf.metrics.stats import (
    order_statistics,
    summarize,
    summarize_adjusted,
    summarize_adjusted_scaled,
    summarize_scaled,
)

NS_PER_MS = 1e6
columns = st.one_of(
    hnp.arrays(np.uint32, st.integers(1, 400)),
    hnp.arrays(np.int32, st.integers(1, 400)),
    hnp.arrays(np.int64, st.integers(1, 400),
               elements=st.integers(-(2**52), 2**52)),
    hnp.arrays(np.int8, st.integers(1, 400)),
)


def check_against_float64(data: np.ndarray, scale: float | None, failures: int) -> None:
    floats = data.astype(np.float64)
    if scale is not None:
        floats /= scale
    lean, whole = summarize_scaled(data, scale, "ms"), summarize(floats, "ms")
    assert lean.keys() == whole.keys()
    for key, value in whole.items():
        if key in ("avg", "std", "sum"):
            assert lean[key] == pytest.approx(value, rel=1e-12, abs=1e-9), key
        else:
            assert lean[key] == value, key  # identical, not close
    assert summarize_adjusted_scaled(data, scale, failures, "ms") == summarize_adjusted(
        floats, failures, "ms")


@settings(max_examples=150, deadline=None)
@given(data=columns, scale=st.sampled_from([NS_PER_MS, None]), failures=st.integers(0, 30))
def test_a_lean_summary_equals_numpys_on_the_float64_values(
        data: np.ndarray, scale: float | None, failures: int) -> None:
    check_against_float64(data, scale, failures)


@settings(max_examples=60, deadline=None)
@given(data=columns, picks=st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_order_statistics_are_the_sorted_values_at_those_ranks(
        data: np.ndarray, picks: list[float]) -> None:
    ranks = [min(data.size - 1, int(p * data.size)) for p in picks]
    ordered = np.sort(data)
    assert order_statistics(data, ranks) == {r: int(ordered[r]) for r in ranks}


def test_chunked_passes_and_skewed_data_give_the_same_figures(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks (the chunk made small), most values in one top-digit bin, a long
    tail, ties, and failures past the last value."""
    monkeypatch.setattr(stats, "_CHUNK", 1000)
    rng = np.random.default_rng(7)
    tail = np.minimum(rng.lognormal(15, 2, 3_000), 2**32 - 1)
    data = np.concatenate([rng.integers(0, 50, 20_000), tail,
                           np.full(500, 2**32 - 1)]).astype(np.uint32)
    rng.shuffle(data)
    check_against_float64(data, NS_PER_MS, failures=0)
    check_against_float64(data, NS_PER_MS, failures=30_000)
    check_against_float64(np.full(5000, 123, dtype=np.uint32), NS_PER_MS, failures=3)


def test_out_of_range_ranks_and_empty_columns() -> None:
    with pytest.raises(IndexError):
        order_statistics(np.arange(5), [5])
    assert summarize_scaled(np.empty(0, dtype=np.uint32), NS_PER_MS, "ms") == {
        "unit": "ms", "count": 0}
    assert summarize_adjusted_scaled(np.empty(0, dtype=np.uint32), NS_PER_MS, 2, "ms")[
        "p50"] is None
