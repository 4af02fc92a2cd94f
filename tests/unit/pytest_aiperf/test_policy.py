"""Verdict settings: validation, the looks of ``extend`` and the sample-size planner."""

from __future__ import annotations

import pytest

from aiperf.common.config import UserConfig
from pytest_aiperf.planner import plan
from pytest_aiperf.policy import PolicyError, VerdictPolicy, pop_policy
from pytest_aiperf.slo import parse_objective

URL = "http://127.0.0.1:1"


def test_defaults_are_the_issues() -> None:
    policy = VerdictPolicy()
    assert (policy.confidence, policy.inconclusive, policy.inconclusive_final,
            policy.validity, policy.repeat, policy.steady_state) == (
        0.95, "pass", "fail", "error", 1, False)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("confidence", 1.5, "confidence"), ("inconclusive", "maybe", "inconclusive"),
    ("repeat", 0, "repeat"), ("validity", "loud", "validity"),
    ("max_duration", "soon", "max_duration"),
])  # fmt: skip
def test_a_bad_setting_is_named(key: str, value: object, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        VerdictPolicy.build("marker", **{key: value})


def test_ini_strings_are_read() -> None:
    policy = VerdictPolicy.build("ini", confidence="0.9", repeat="3", steady_state="true",
                                 max_duration="2m")
    assert (policy.confidence, policy.repeat, policy.steady_state, policy.max_duration) == (
        0.9, 3, True, 120.0)


def test_policy_keys_leave_the_profile() -> None:
    values = {"concurrency": 2, "inconclusive": "extend", "repeat": 2}
    assert pop_policy(values) == {"inconclusive": "extend", "repeat": 2}
    assert values == {"concurrency": 2}


def test_extend_looks_at_most_four_times_by_default_each_at_alpha_over_k() -> None:
    config = UserConfig.build(url=URL, request_count=50)
    extend = VerdictPolicy(inconclusive="extend")
    assert extend.looks(config) == 4
    assert extend.look_confidence(4) == pytest.approx(1 - 0.05 / 4)
    assert VerdictPolicy(inconclusive="extend", max_request_count=120).looks(config) == 2
    assert VerdictPolicy().looks(config) == 1
    timed = UserConfig.build(url=URL, benchmark_duration=5, request_rate=10)
    assert VerdictPolicy(inconclusive="extend", max_duration=12).looks(timed) == 2


def test_the_planner_names_the_n_an_objective_needs() -> None:
    config = UserConfig.build(url=URL, request_count=500)
    objectives = [parse_objective("request_latency.p999", "< 1 s"),
                  parse_objective("request_latency.p90", "< 1 s"),
                  parse_objective("request_error_rate", "< 0.5 %"),
                  parse_objective("request_error_rate", "<= 0 %")]  # exact: no warning
    warnings = plan(objectives, config, VerdictPolicy())
    assert len(warnings) == 2
    assert "request_latency.p999 < 1 s can never PASS with 500 requests" in warnings[0]
    assert "n >= 2995" in warnings[0]
    assert "request_error_rate < 0.5 % can never PASS" in warnings[1]
    # extend's budget counts: 4 x 1200 requests reach the n >= 4380 of p99.9 at 1 - 0.05 / 4
    bigger = UserConfig.build(url=URL, request_count=1200)
    assert plan(objectives[:1], bigger, VerdictPolicy(inconclusive="extend")) == []
