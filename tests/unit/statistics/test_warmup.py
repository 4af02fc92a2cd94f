"""MSER-5 finds a warm-up transient and leaves a stationary series nearly whole."""

from __future__ import annotations

import numpy as np
import pytest

from aiperf.statistics import mser5


def warm_up_series(seed: int, n: int = 2000) -> np.ndarray:
    """Latency 100 ms + noise (sd 5), starting 60 ms high and decaying with time constant 40:
    the bias falls below a tenth of the noise's sd near observation 40 * ln(120) = 190."""
    t = np.arange(n)
    return 100 + 60 * np.exp(-t / 40) + np.random.default_rng(seed).normal(0, 5, n)


@pytest.mark.parametrize("seed", range(10))
def test_the_cut_lands_near_the_end_of_a_known_transient(seed: int) -> None:
    cut = mser5(warm_up_series(seed))
    assert 60 <= cut <= 300, cut
    assert cut % 5 == 0


def test_a_stationary_series_loses_little() -> None:
    cuts = [mser5(np.random.default_rng(seed).normal(100, 5, 2000)) for seed in range(40)]
    assert np.median(cuts) <= 100  # 5 % of the run
    assert max(cuts) <= 200  # 10 %; MSER-5 could cut up to half


def test_a_step_down_is_cut_at_the_step() -> None:
    series = np.concatenate([np.full(300, 500.0), np.full(1700, 100.0)])
    series += np.random.default_rng(1).normal(0, 1, series.size)
    assert mser5(series) == 300


def test_short_or_bad_series() -> None:
    assert mser5(np.arange(9.0)) == 0
    assert mser5(np.array([])) == 0
    with pytest.raises(ValueError, match="finite"):
        mser5(np.array([1.0, np.nan] * 10))
    with pytest.raises(ValueError, match="one-dimensional"):
        mser5(np.ones((10, 10)))
