"""Bonferroni looks for the ``extend`` policy: the per-look alpha, and a simulation of looking
again after every chunk that shows the whole procedure stays within alpha."""

from __future__ import annotations

import numpy as np
import pytest

from aiperf.statistics import bonferroni, decide, quantile_interval
from tests.unit.statistics._simulation import ALPHA, allowed_excess, lognormal

TRIALS = 1000


def test_bonferroni_splits_alpha_over_the_looks() -> None:
    assert bonferroni(0.05, 1) == 0.05
    assert bonferroni(0.05, 4) == pytest.approx(0.0125)


@pytest.mark.parametrize(("alpha", "looks"), [(0.0, 2), (1.0, 2), (0.05, 0), (0.05, 1.5)])
def test_bad_arguments_are_refused(alpha: float, looks: float) -> None:
    with pytest.raises(ValueError):
        bonferroni(alpha, looks)  # type: ignore[arg-type]


def false_pass_rate_of_looking(looks: int, per_look_alpha: float, chunk: int) -> float:
    """Run each trial in chunks and stop at the first decided look, as ``extend`` does; the
    threshold equals the true p90, so for "<" every PASS is false."""
    dist = lognormal()
    truth = dist.quantile(0.90)
    stream = dist.draw(np.random.default_rng(looks), (TRIALS, looks * chunk))
    false_passes = 0
    for row in stream:
        for look in range(1, looks + 1):
            interval = quantile_interval(row[: look * chunk], 90, 1 - per_look_alpha)
            verdict = decide(interval, "<", truth)
            if verdict != "INCONCLUSIVE":
                false_passes += verdict == "PASS"
                break
    return false_passes / TRIALS


def test_k_looks_at_alpha_over_k_keep_the_false_pass_rate_within_alpha() -> None:
    looks = 4
    rate = false_pass_rate_of_looking(looks, bonferroni(ALPHA, looks), chunk=100)
    assert rate <= ALPHA + allowed_excess(ALPHA, TRIALS)


def test_looking_k_times_at_alpha_each_inflates_it() -> None:
    """Power check: without the split, four looks give a false PASS well above alpha."""
    rate = false_pass_rate_of_looking(4, ALPHA, chunk=100)
    assert rate > ALPHA + allowed_excess(ALPHA, TRIALS)
