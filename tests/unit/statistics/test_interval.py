"""``decide``: the one rule from an interval to a verdict, and the interval's JSON form."""

from __future__ import annotations

import json
import math

import pytest

from aiperf.statistics import Interval, decide


def interval(low: float | None, high: float | None, estimate: float | None = 5.0) -> Interval:
    return Interval(estimate, low, high, 0.95, "test", 100)


# (low, high, op, threshold, verdict): both bounds, one bound, equality on each side.
TRUTH_TABLE = [
    # "<": PASS when high < T, FAIL when low >= T.
    (1.0, 4.0, "<", 5.0, "PASS"),
    (1.0, 5.0, "<", 5.0, "INCONCLUSIVE"),  # high == T does not show value < T
    (4.0, 6.0, "<", 5.0, "INCONCLUSIVE"),
    (5.0, 6.0, "<", 5.0, "FAIL"),  # low == T: the value is at least T, which breaks "<"
    (6.0, 7.0, "<", 5.0, "FAIL"),
    # "<=": PASS when high <= T, FAIL when low > T.
    (1.0, 5.0, "<=", 5.0, "PASS"),
    (5.0, 6.0, "<=", 5.0, "INCONCLUSIVE"),
    (5.5, 6.0, "<=", 5.0, "FAIL"),
    # ">": PASS when low > T, FAIL when high <= T.
    (6.0, 7.0, ">", 5.0, "PASS"),
    (5.0, 7.0, ">", 5.0, "INCONCLUSIVE"),
    (4.0, 5.0, ">", 5.0, "FAIL"),
    (1.0, 4.0, ">", 5.0, "FAIL"),
    # ">=": PASS when low >= T, FAIL when high < T.
    (5.0, 7.0, ">=", 5.0, "PASS"),
    (4.0, 5.0, ">=", 5.0, "INCONCLUSIVE"),
    (1.0, 4.9, ">=", 5.0, "FAIL"),
    # A missing bound decides nothing on its side.
    (None, 4.0, "<", 5.0, "PASS"),
    (None, 6.0, "<", 5.0, "INCONCLUSIVE"),
    (6.0, None, "<", 5.0, "FAIL"),
    (1.0, None, "<", 5.0, "INCONCLUSIVE"),
    (None, None, "<", 5.0, "INCONCLUSIVE"),
    (None, None, ">=", 5.0, "INCONCLUSIVE"),
    (None, 4.0, ">", 5.0, "FAIL"),
    (6.0, None, ">", 5.0, "PASS"),
    (None, 6.0, ">", 5.0, "INCONCLUSIVE"),
    # Error-adjusted bounds can be +inf: never a PASS for "<", a FAIL once the low bound is.
    (1.0, math.inf, "<", 5.0, "INCONCLUSIVE"),
    (math.inf, math.inf, "<", 5.0, "FAIL"),
    (math.inf, math.inf, ">", 5.0, "PASS"),
]


@pytest.mark.parametrize(("low", "high", "op", "threshold", "verdict"), TRUTH_TABLE)
def test_decide_follows_the_truth_table(
    low: float | None, high: float | None, op: str, threshold: float, verdict: str
) -> None:
    assert decide(interval(low, high), op, threshold) == verdict


def test_a_point_estimate_alone_never_decides() -> None:
    for op in ("<", "<=", ">", ">="):
        for threshold in (-1e9, 0.0, 5.0, 1e9):
            assert decide(interval(None, None, 5.0), op, threshold) == "INCONCLUSIVE"


@pytest.mark.parametrize("op", ["==", "<<", "", "lt"])
def test_an_unknown_operator_is_refused_by_name(op: str) -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        decide(interval(1.0, 2.0), op, 1.5)


def test_a_nan_threshold_or_crossed_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="NaN"):
        decide(interval(1.0, 2.0), "<", math.nan)
    with pytest.raises(ValueError, match="crossed"):
        decide(interval(3.0, 2.0), "<", 1.0)


def test_the_package_exports_resolve() -> None:
    import aiperf.statistics as statistics

    for name in statistics.__all__:
        assert getattr(statistics, name) is not None


def test_to_dict_is_json_safe_and_keeps_none_for_no_interval() -> None:
    full = Interval(2.0, 1.0, 3.0, 0.95, "m", 10).to_dict()
    assert full == {
        "measured": 2.0,
        "interval": [1.0, 3.0],
        "confidence": 0.95,
        "n": 10,
        "method": "m",
        "note": None,
    }
    none = Interval(2.0, None, None, 0.95, "m", 3, "no interval").to_dict()
    assert none["interval"] is None and none["note"] == "no interval"
    one_sided = Interval(2.0, None, 3.0, 0.95, "m", 3).to_dict()
    assert one_sided["interval"] == [None, 3.0]
    infinite = Interval(math.inf, 1.0, math.inf, 0.95, "m", 3).to_dict()
    assert infinite["measured"] is None and infinite["interval"] == [1.0, None]
    json.dumps([full, none, one_sided, infinite], allow_nan=False)
