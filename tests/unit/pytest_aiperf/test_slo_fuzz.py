"""Any objective text gives an Objective or an SLOError naming the problem, never another
exception; a parsed threshold compares in the metric's display unit."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from aiperf.metrics.definitions import BY_TAG
from pytest_aiperf.slo import OPERATORS, SLOError, parse_objective

_KEYS = st.one_of(
    st.text(max_size=40),
    st.builds(lambda m, s: f"{m}.{s}", st.sampled_from(sorted(BY_TAG)),
              st.text(alphabet="pavgmxinstdcou0123456789.", max_size=8)),
    st.builds(lambda m: f"adj_{m}", st.sampled_from(sorted(BY_TAG))),
    st.builds(lambda m, w: f"{m}.p99@{w}", st.sampled_from(sorted(BY_TAG)),  # windowed
              st.one_of(st.text(max_size=8), st.sampled_from(["10s", "0", "-1s", "1h",
                                                               "inf", "nan", "500ms"]))),
)
_VALUES = st.one_of(
    st.text(max_size=40),
    st.builds(lambda op, n, u: f"{op} {n} {u}", st.sampled_from([*OPERATORS, "==", "=<"]),
              st.floats(allow_nan=True, allow_infinity=True),
              st.sampled_from(["", "ms", "s", "us", "ns", "%", "req/s", "tokens/s", "parsec"])),
)


@given(_KEYS, _VALUES)
def test_any_objective_parses_or_is_an_slo_error(key: str, value: str) -> None:
    try:
        objective = parse_objective(key, value)
    except SLOError as exc:
        assert str(exc)
        return
    assert objective.op in OPERATORS
    assert not math.isnan(objective.threshold)
    assert objective.metric.removeprefix("adj_") in BY_TAG
    assert objective.window_s is None or (math.isfinite(objective.window_s)
                                          and objective.window_s > 0)
