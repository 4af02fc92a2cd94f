"""Latency distributions and true quantiles of the mock, without a network."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.latency import Latency, sigma_from_p99

LOGNORMAL = {"ttft_distribution": "lognormal", "ttft_ms": 50.0, "ttft_p99_ms": 200.0}


@pytest.mark.parametrize(("keys", "says"), [
    ({"ttft_distribution": "lognormal", "ttft_ms": 50.0}, "exactly one of"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 50.0, "ttft_sigma": 0.5,
      "ttft_p99_ms": 90.0}, "exactly one of"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 0.0, "ttft_sigma": 0.5}, "above 0"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 50.0, "ttft_p99_ms": 40.0}, "above the"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 50.0, "ttft_sigma": 0.5,
      "ttft_stddev_ms": 3.0}, "not ttft_stddev_ms"),
    ({"ttft_sigma": 0.5}, "only to"),
    ({"ttft_distribution": "fixed", "ttft_stddev_ms": 2.0}, "takes no"),
    ({"ttft_distribution": "gamma"}, "ttft_distribution"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 50.0, "ttft_sigma": -1.0}, "greater than"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 1.0, "ttft_sigma": 618.0}, "at most 5"),
    ({"ttft_distribution": "lognormal", "ttft_ms": 1.0, "ttft_p99_ms": 1e300}, "at most 5"),
    ({"latency_distribution": "lognormal"}, "need latency_ms"),
    ({"latency_ms": 40.0, "latency_distribution": "lognormal"}, "exactly one of"),
    ({"slots": 0}, "greater than or equal to 1"),
])
def test_bad_distribution_keys_are_refused_with_the_reason(keys: dict, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        MockServerConfig(**keys)


def test_the_default_is_todays_fixed_or_normal_model() -> None:
    assert MockServerConfig(ttft_ms=30).ttft_latency() == Latency("normal", 30.0, 0.0)
    assert MockServerConfig(ttft_ms=30).true_quantile("time_to_first_token", 0.99) == 30.0
    assert MockServerConfig(ttft_ms=30, ttft_stddev_ms=5).true_quantile(
        "time_to_first_token", 0.5) == pytest.approx(30.0)


def test_a_lognormal_given_by_median_and_p99_has_that_median_and_p99() -> None:
    config = MockServerConfig(**LOGNORMAL)
    assert config.true_quantile("time_to_first_token", 0.5) == pytest.approx(50.0)
    assert config.true_quantile("time_to_first_token", 0.99) == pytest.approx(200.0)
    assert config.ttft_latency().spread == pytest.approx(sigma_from_p99(50.0, 200.0))


def test_request_latency_adds_the_fixed_token_pauses() -> None:
    config = MockServerConfig(**LOGNORMAL, itl_ms=2.0, tokens=10, tokens_per_chunk=3)
    ttft90 = config.true_quantile("time_to_first_token", 0.9)
    # 10 tokens in 4 chunks of 3: three pauses of 3 x 2 ms.
    assert config.true_quantile("request_latency", 0.9) == pytest.approx(ttft90 + 18.0)
    assert config.true_quantile("request_latency", 0.9, stream=False) == pytest.approx(
        ttft90 + 20.0)
    assert config.true_quantile("request_latency", 0.9, tokens=4) == pytest.approx(
        ttft90 + 6.0)
    whole = MockServerConfig(latency_ms=40.0, latency_distribution="lognormal",
                             latency_sigma=0.25)
    assert whole.true_quantile("request_latency", 0.5, stream=False) == pytest.approx(40.0)


@pytest.mark.parametrize(("call", "says"), [
    (lambda c: c.true_quantile("inter_token_latency", 0.5), "true_quantile knows"),
    (lambda c: c.true_quantile("time_to_first_token", 1.0), "0 < q < 1"),
    (lambda c: c.true_quantile("time_to_first_token", 0.5, stream=False), "streaming"),
    (lambda c: c.model_copy(update={"itl_stddev_ms": 1.0}).true_quantile(
        "request_latency", 0.5), "fixed ITL"),
])
def test_quantiles_that_have_no_closed_form_are_refused(call, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        call(MockServerConfig(**LOGNORMAL))


def test_a_normal_clamped_at_zero_has_the_clamped_quantile() -> None:
    latency = Latency("normal", 5.0, 10.0)
    assert latency.quantile_ms(0.1) == 0.0  # 5 - 12.8 < 0: the clamp's mass at 0
    rng = random.Random(7)
    draws = np.array([latency.draw_s(rng) for _ in range(2000)])
    assert (draws >= 0).all() and (draws == 0).mean() > 0.25  # P(N(5, 10) < 0) = 0.31


@pytest.mark.parametrize("latency", [Latency("lognormal", 50.0, 0.6),
                                     Latency("normal", 5.0, 10.0),
                                     Latency("normal", 30.0, 4.0)])
def test_draws_follow_the_stated_quantiles(latency: Latency) -> None:
    rng = random.Random(1)
    n = 40_000
    draws = np.array([latency.draw_s(rng) * 1000 for _ in range(n)])
    for q in (0.5, 0.9, 0.99):  # all above the clamp's mass at 0
        # The empirical CDF at the true quantile: within 5 binomial sd of q.
        below = float(np.mean(draws <= latency.quantile_ms(q)))
        assert abs(below - q) <= 5 * math.sqrt(q * (1 - q) / n), (q, below)


def test_a_fixed_latency_is_always_itself() -> None:
    rng = random.Random(1)
    assert {Latency("fixed", 12.0).draw_s(rng) for _ in range(100)} == {0.012}


def test_draws_are_reproducible_from_the_seed() -> None:
    latency = MockServerConfig(**LOGNORMAL).ttft_latency()
    first = [latency.draw_s(random.Random(3)) for _ in range(5)]
    assert first == [latency.draw_s(random.Random(3)) for _ in range(5)]


@settings(max_examples=200, deadline=None)
@given(median=st.floats(0.01, 1e5), ratio=st.floats(1.0001, 1e3),
       q=st.floats(0.001, 0.999))
def test_lognormal_quantiles_are_monotone_and_hit_p99(median: float, ratio: float,
                                                      q: float) -> None:
    config = MockServerConfig(ttft_distribution="lognormal", ttft_ms=median,
                              ttft_p99_ms=median * ratio)
    assert config.true_quantile("time_to_first_token", 0.99) == pytest.approx(median * ratio)
    low, high = (config.true_quantile("time_to_first_token", x) for x in (q * 0.99, q))
    assert 0 < low <= high


_maybe = st.one_of(st.none(), st.floats(-10, 1e4, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["fixed", "normal", "lognormal", "weibull"]),
       center=st.floats(-5, 1e4, allow_nan=False), stddev=st.floats(-1, 100),
       sigma=_maybe, p99=_maybe, q=st.floats(0.001, 0.999))
def test_any_keys_validate_or_fail_clearly_and_valid_ones_have_sane_quantiles(
    kind: str, center: float, stddev: float, sigma: float | None, p99: float | None,
    q: float,
) -> None:
    try:
        config = MockServerConfig(ttft_distribution=kind, ttft_ms=center,
                                  ttft_stddev_ms=stddev, ttft_sigma=sigma, ttft_p99_ms=p99)
    except ValidationError:
        return
    low = config.true_quantile("time_to_first_token", q * 0.5)
    high = config.true_quantile("time_to_first_token", q)
    assert 0 <= low <= high and math.isfinite(high)
    assert config.ttft_latency().draw_s(random.Random(0)) >= 0
