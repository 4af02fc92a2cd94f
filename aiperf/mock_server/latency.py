"""The mock's latency distributions: how one pause is drawn, and its exact quantiles.

A pause is drawn from ``fixed``, ``normal`` or ``lognormal``. Because the mock draws from
a named distribution, each quantile of an unsaturated server's latency is known in closed
form, which is what verdict tests check measured quantiles against.

- ``normal(mean, stddev)`` is *clamped* at 0 (a draw below 0 becomes 0), not truncated:
  the clamp is monotone, so the q-quantile is exactly ``max(0, mean + stddev * z_q)``.
  A stddev of 0 is ``fixed``.
- ``lognormal(median, sigma)``: ``median * exp(sigma * Z)``; its q-quantile is
  ``median * exp(sigma * z_q)``. A user may give its p99 instead of sigma:
  ``sigma = ln(p99 / median) / z_0.99``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

DistributionKind = Literal["fixed", "normal", "lognormal"]
_STANDARD = NormalDist()
Z_99 = _STANDARD.inv_cdf(0.99)


def sigma_from_p99(median_ms: float, p99_ms: float) -> float:
    """The lognormal sigma whose p99 is ``p99_ms`` for that median."""
    return math.log(p99_ms / median_ms) / Z_99


@dataclass(frozen=True)
class Latency:
    """One pause's distribution, in milliseconds. ``spread`` is the normal's stddev or the
    lognormal's sigma (unused for ``fixed``)."""

    kind: DistributionKind
    center_ms: float
    spread: float = 0.0

    def draw_s(self, rng: random.Random) -> float:
        """One pause, in seconds."""
        if self.kind == "lognormal":
            return self.center_ms * math.exp(self.spread * rng.gauss(0.0, 1.0)) / 1000
        if self.kind == "normal" and self.spread > 0:
            return max(0.0, rng.gauss(self.center_ms, self.spread)) / 1000
        return self.center_ms / 1000

    def quantile_ms(self, q: float) -> float:
        """The exact q-quantile (0 < q < 1) of ``draw_s`` x 1000."""
        if not 0 < q < 1:
            raise ValueError(f"a quantile needs 0 < q < 1, got {q}")
        if self.kind == "lognormal":
            return self.center_ms * math.exp(self.spread * _STANDARD.inv_cdf(q))
        if self.kind == "normal" and self.spread > 0:
            return max(0.0, self.center_ms + self.spread * _STANDARD.inv_cdf(q))
        return self.center_ms

    @property
    def is_fixed(self) -> bool:
        return self.kind == "fixed" or (self.kind == "normal" and self.spread <= 0)
