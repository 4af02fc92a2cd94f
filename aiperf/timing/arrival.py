"""Arrival patterns: the gaps between request send times in rate mode."""

from __future__ import annotations

import numpy as np

_NS = 1_000_000_000


class ArrivalPattern:
    def __init__(self, rate: float, smoothness: float, rng: np.random.Generator) -> None:
        self.rate = rate
        self.smoothness = smoothness
        self.rng = rng

    def next_gap_ns(self) -> int:
        raise NotImplementedError


class ConstantArrival(ArrivalPattern):
    def next_gap_ns(self) -> int:
        return int(_NS / self.rate)


class PoissonArrival(ArrivalPattern):
    def next_gap_ns(self) -> int:
        return int(self.rng.exponential(1.0 / self.rate) * _NS)


class GammaArrival(ArrivalPattern):
    """Shape = smoothness (1 is Poisson; larger is more regular), mean gap 1/rate."""

    def next_gap_ns(self) -> int:
        shape = self.smoothness
        return int(self.rng.gamma(shape, 1.0 / (self.rate * shape)) * _NS)
