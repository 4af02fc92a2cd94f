"""Durations are written one way everywhere: seconds, or a number with ms, s, m or h,
exactly as the engine's config (and so the command line) reads them."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_aiperf.durations import parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    (3, 3.0), (2.5, 2.5), ("3", 3.0), ("3s", 3.0), ("3 s", 3.0), ("500ms", 0.5),
    ("2m", 120.0), ("1.5min", 90.0), (" 10 sec ", 10.0), ("1h", 3600.0),
])  # fmt: skip
def test_durations_parse_to_seconds(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [0, "0s", -1, "-3s", "3d", "soon", "", None, True,
                                   float("nan"), float("inf"), [3]])
def test_anything_else_is_a_clear_error_naming_the_setting(value: object) -> None:
    with pytest.raises(ValueError, match="aiperf_test_timeout: "):
        parse_duration(value, "aiperf_test_timeout")


@given(st.one_of(st.text(max_size=20), st.floats(), st.integers(), st.none(), st.booleans()))
def test_any_input_gives_positive_seconds_or_a_value_error(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds > 0


@given(st.floats(min_value=0.001, max_value=1e6), st.sampled_from(["ms", "s", "m"]))
def test_a_number_with_a_unit_round_trips(number: float, unit: str) -> None:
    factor = {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]
    assert parse_duration(f"{number!r}{unit}") == pytest.approx(number * factor)


def test_zero_is_allowed_where_none_is_meaningful() -> None:
    assert parse_duration("0s", "benchmark_grace_period", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="must be more than zero"):
        parse_duration(-1, "benchmark_grace_period", allow_zero=True)


@given(st.text(max_size=12))
def test_the_plugin_reads_a_duration_exactly_as_the_engine_config_does(text: str) -> None:
    from aiperf.common.config import parse_duration as engine_seconds

    try:
        engine = engine_seconds(text)
    except ValueError:
        engine = None
    try:
        plugin: float | None = parse_duration(text, allow_zero=True)
    except ValueError:
        plugin = None
    assert plugin == engine
