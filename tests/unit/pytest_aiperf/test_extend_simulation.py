"""``extend`` keeps its error rates at alpha over repeated looks (seeded simulation, no
network): lognormal and bimodal latencies with known quantiles, chunks pooled look after
look at 1 - alpha / K, thresholds at 0.75x, 1.0x and 1.35x the true p90."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_aiperf.judge import PooledEvidence, extend_until_decided, judge
from pytest_aiperf.policy import VerdictPolicy
from pytest_aiperf.slo import parse_objective
from tests.unit.pytest_aiperf.test_judge import FakeEvidence

TRIALS = 400
CHUNK = 30  # a look with 30 requests cannot bound a p90 at 1 - 0.05/4 (needs 42)
LOOKS = 4
ALPHA = 0.05
# At most alpha, plus three standard errors of a rate estimated from TRIALS trials.
LIMIT = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / TRIALS)


def lognormal(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.lognormal(math.log(100.0), 0.5, n)


def bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    slow = rng.random(n) < 0.2  # 20 % of requests take a slow path
    return np.where(slow, rng.normal(400.0, 20.0, n), rng.normal(100.0, 10.0, n))


def true_p90(draw: object) -> float:
    """The true quantile, from one very large seeded sample (error ~0.1 %)."""
    values = draw(np.random.default_rng(12345), 2_000_000)  # type: ignore[operator]
    return float(np.quantile(values, 0.9))


def _outcomes(draw: object, threshold: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    objective = parse_objective("request_latency.p90", f"< {threshold!r} ms")
    confidence = VerdictPolicy(inconclusive="extend").look_confidence(LOOKS)
    counts = {"PASS": 0, "FAIL": 0, "INCONCLUSIVE": 0}
    used = []
    for _ in range(TRIALS):
        def chunk() -> FakeEvidence:
            return FakeEvidence(list(draw(rng, CHUNK)))  # type: ignore[operator]

        verdicts, chunks = extend_until_decided(
            chunk(), chunk,
            lambda parts: [judge(objective, PooledEvidence(parts), confidence)], LOOKS)
        counts[verdicts[0].status] += 1
        used.append(len(chunks))
    return {**{k: v / TRIALS for k, v in counts.items()}, "looks": float(np.mean(used))}


@pytest.mark.parametrize("draw", [lognormal, bimodal])
def test_extend_holds_alpha_at_the_threshold_and_decides_away_from_it(draw: object) -> None:
    truth = true_p90(draw)
    # 1.0x: the true p90 equals the threshold, "<" is false: any PASS is a false PASS.
    # (Looks each at the full alpha give ~0.10 here, over LIMIT: this catches them.)
    at = _outcomes(draw, truth, seed=1)
    assert at["PASS"] <= LIMIT, at
    # 0.75x: the objective is false; a PASS is false, and a FAIL should be common.
    below = _outcomes(draw, 0.75 * truth, seed=2)
    assert below["PASS"] <= LIMIT and below["FAIL"] >= 0.5, below
    # 1.35x: the objective is true; a FAIL is false, and a PASS should be common.
    above = _outcomes(draw, 1.35 * truth, seed=3)
    assert above["FAIL"] <= LIMIT and above["PASS"] >= 0.5, above
    assert 1 < above["looks"] <= LOOKS  # it needed more than one look, and stopped early


def test_extend_stops_at_the_first_look_that_decides() -> None:
    calls = []

    def more() -> FakeEvidence:
        calls.append(1)
        return FakeEvidence([1.0] * 30)

    objective = parse_objective("request_latency.p90", "< 10 ms")
    confidence = VerdictPolicy(inconclusive="extend").look_confidence(LOOKS)
    verdicts, chunks = extend_until_decided(
        FakeEvidence([1.0] * 30), more,
        lambda parts: [judge(objective, PooledEvidence(parts), confidence)], LOOKS)
    assert verdicts[0].status == "PASS" and len(chunks) == 2 and len(calls) == 1
