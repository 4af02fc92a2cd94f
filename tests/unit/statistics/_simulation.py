"""Monte-Carlo error rates of the verdicts, shared by the simulation tests and printable as a
table (``python -m tests.unit.statistics._simulation``) for docs/statistics.md.

Every sample is drawn as one (trials, n) matrix from a distribution whose true quantiles and
mean are known by construction, so each verdict can be scored against the truth.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aiperf.statistics import Interval, decide, quantile_interval

ALPHA = 0.05
CONFIDENCE = 1.0 - ALPHA
THRESHOLD_FACTORS = (0.75, 1.0, 1.35)
OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def allowed_excess(rate: float, trials: int) -> float:
    """Three binomial standard errors of a rate estimated from ``trials`` trials: a correct
    method exceeds its nominal rate by more than this with probability about 0.1 %."""
    return 3.0 * math.sqrt(rate * (1.0 - rate) / trials)


@dataclass(frozen=True)
class Distribution:
    name: str
    draw: Callable[[np.random.Generator, tuple[int, int]], np.ndarray]
    quantile: Callable[[float], float]  # p in (0, 1) -> the true p-quantile
    mean: float


def lognormal(sigma: float = 1.0, mu: float = 3.0) -> Distribution:
    from scipy.stats import norm

    return Distribution(
        f"lognormal(sigma={sigma:g})",
        lambda rng, shape: rng.lognormal(mu, sigma, shape),
        lambda p: math.exp(mu + sigma * float(norm.ppf(p))),
        math.exp(mu + sigma * sigma / 2),
    )


def bimodal(fast: float = 0.9) -> Distribution:
    """A fast mode N(50, 5) and a slow one N(200, 20): a cache hit and a miss, say."""
    from scipy.optimize import brentq
    from scipy.stats import norm

    def cdf(x: float) -> float:
        return fast * float(norm.cdf(x, 50, 5)) + (1 - fast) * float(norm.cdf(x, 200, 20))

    def draw(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        slow = rng.random(shape) >= fast
        return np.where(slow, rng.normal(200, 20, shape), rng.normal(50, 5, shape))

    return Distribution(
        f"bimodal({fast:.0%} fast)",
        draw,
        lambda p: float(brentq(lambda x: cdf(x) - p, -100.0, 500.0, xtol=1e-10)),
        fast * 50 + (1 - fast) * 200,
    )


def poisson(lam: float = 20.0) -> Distribution:
    """Integer counts (token counts): many ties, where the bounds become conservative."""
    from scipy.stats import poisson as scipy_poisson

    return Distribution(
        f"poisson({lam:g})",
        lambda rng, shape: rng.poisson(lam, shape).astype(np.float64),
        lambda p: float(scipy_poisson.ppf(p, lam)),
        lam,
    )


@dataclass(frozen=True)
class QuantileRates:
    """What happened over the trials for one distribution, n and percentile."""

    false_pass: dict[tuple[str, float], float]  # (op, threshold factor) -> rate
    false_fail: dict[tuple[str, float], float]
    upper_coverage: float  # P(high >= true quantile); a missing bound does not cover
    lower_coverage: float
    both_coverage: float
    inconclusive: dict[tuple[str, float], float]


def quantile_rates(
    dist: Distribution,
    n: int,
    q: float,
    trials: int,
    seed: int,
    interval: Callable[[np.ndarray, float, float], Interval] = quantile_interval,
    confidence: float = CONFIDENCE,
) -> QuantileRates:
    sample = dist.draw(np.random.default_rng(seed), (trials, n))
    truth = dist.quantile(q / 100)
    intervals = [interval(row, q, confidence) for row in sample]
    upper, lower, both = coverage(intervals, truth)
    false_pass, false_fail, inconclusive = {}, {}, {}
    for op, holds in OPS.items():
        for factor in THRESHOLD_FACTORS:
            threshold = factor * truth
            meets = holds(truth, threshold)
            verdicts = [decide(i, op, threshold) for i in intervals]
            passes = sum(v == "PASS" for v in verdicts) / trials
            fails = sum(v == "FAIL" for v in verdicts) / trials
            false_pass[op, factor] = 0.0 if meets else passes
            false_fail[op, factor] = fails if meets else 0.0
            inconclusive[op, factor] = 1.0 - passes - fails
    return QuantileRates(false_pass, false_fail, upper, lower, both, inconclusive)


def coverage(intervals: list[Interval], truth: float) -> tuple[float, float, float]:
    """(upper, lower, two-sided) coverage of ``truth``; a missing bound covers nothing, so a
    method cannot look good by declining to give bounds."""
    high = np.array([-math.inf if i.high is None else i.high for i in intervals])
    low = np.array([math.inf if i.low is None else i.low for i in intervals])
    return (
        float(np.mean(high >= truth)),
        float(np.mean(low <= truth)),
        float(np.mean((low <= truth) & (truth <= high))),
    )


QUANTILE_CASES = [(50, 50), (90, 100), (99, 300), (99, 1000)]
DISTRIBUTIONS = (lognormal, bimodal, poisson)


def mean_rates(dist: Distribution, n: int, trials: int, seed: int) -> tuple[float, float, float]:
    """(false PASS, false FAIL, withheld): P(high < mean), P(low > mean) and the share of
    samples whose tail-side bound was withheld, for ``mean_interval``."""
    from aiperf.statistics import mean_interval

    sample = dist.draw(np.random.default_rng(seed), (trials, n))
    intervals = [mean_interval(row, CONFIDENCE) for row in sample]
    false_pass = np.mean([i.high is not None and i.high < dist.mean for i in intervals])
    false_fail = np.mean([i.low is not None and i.low > dist.mean for i in intervals])
    withheld = np.mean([i.high is None or i.low is None for i in intervals])
    return float(false_pass), float(false_fail), float(withheld)


MEAN_CASES = [30, 100, 300, 1000]


def main() -> None:
    trials = 2000
    print(f"quantile bounds at {CONFIDENCE:.0%}, {trials} trials per row")
    print("distribution | q | n | max false PASS | max false FAIL | upper cov | lower cov | both")
    for make in DISTRIBUTIONS:
        dist = make()
        for q, n in QUANTILE_CASES:
            r = quantile_rates(dist, n, q, trials, seed=n + int(q))
            print(
                f"{dist.name} | p{q} | {n} | {max(r.false_pass.values()):.4f} | "
                f"{max(r.false_fail.values()):.4f} | {r.upper_coverage:.4f} | "
                f"{r.lower_coverage:.4f} | {r.both_coverage:.4f}"
            )
    print(f"mean_interval at {CONFIDENCE:.0%}, {trials} trials per row")
    print("distribution | n | false PASS P(high < mean) | false FAIL P(low > mean) | withheld")
    for dist in (lognormal(0.5), lognormal(1.0), lognormal(1.5), bimodal(0.9), bimodal(0.99)):
        for n in MEAN_CASES:
            fp, ff, withheld = mean_rates(dist, n, trials, seed=n)
            print(f"{dist.name} | {n} | {fp:.4f} | {ff:.4f} | {withheld:.3f}")


if __name__ == "__main__":
    main()
