"""The interval every verdict is judged on, and the one rule that turns it into a verdict."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

Verdict = Literal["PASS", "FAIL", "INCONCLUSIVE"]

OPERATORS: tuple[str, ...] = ("<", "<=", ">", ">=")


@dataclass(frozen=True)
class Interval:
    """A point estimate with one-sided confidence bounds.

    Each bound holds on its own at ``confidence``: P(true value <= high) >= confidence and
    P(low <= true value) >= confidence, so [low, high] holds with >= 2 * confidence - 1.
    A bound is None when the data cannot give one at this n and confidence; it may be +inf
    (error-adjusted values, where failed requests count as infinitely slow).
    """

    estimate: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str
    n: int
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: a non-finite number (an infinite bound) is written as null."""
        interval = None
        if self.low is not None or self.high is not None:
            interval = [_json_number(self.low), _json_number(self.high)]
        return {
            "measured": _json_number(self.estimate),
            "interval": interval,
            "confidence": self.confidence,
            "n": self.n,
            "method": self.method,
            "note": self.note,
        }


def decide(interval: Interval, op: str, threshold: float) -> Verdict:
    """PASS when the bound on the objective's side meets the threshold, FAIL when the bound on
    the other side breaks it, INCONCLUSIVE otherwise.

    For ``<``/``<=`` the upper bound decides PASS and the lower bound decides FAIL; ``>``/``>=``
    mirror this. Equality follows the operator: ``high == threshold`` passes ``<=`` but not
    ``<``, and ``low == threshold`` fails ``<`` (the value is at least the threshold) but not
    ``<=``. A missing bound decides nothing on its side.
    """
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}: expected one of {', '.join(OPERATORS)}")
    if math.isnan(threshold):
        raise ValueError("threshold is NaN")
    low, high = interval.low, interval.high
    if low is not None and high is not None and low > high:
        raise ValueError(f"interval bounds are crossed: low {low} > high {high}")
    if op == "<":
        passed = high is not None and high < threshold
        failed = low is not None and low >= threshold
    elif op == "<=":
        passed = high is not None and high <= threshold
        failed = low is not None and low > threshold
    elif op == ">":
        passed = low is not None and low > threshold
        failed = high is not None and high <= threshold
    else:
        passed = low is not None and low >= threshold
        failed = high is not None and high < threshold
    if passed:
        return "PASS"
    if failed:
        return "FAIL"
    return "INCONCLUSIVE"


def check_confidence(confidence: float) -> float:
    """Bounds are one-sided at ``confidence``; below 0.5 a lower bound could exceed the upper."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    return float(confidence)


def _json_number(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
