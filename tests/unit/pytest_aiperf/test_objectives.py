"""Objectives are checked against what the metric really has, and verdicts read as text."""

from __future__ import annotations

import pytest

from aiperf.results import MetricResult, ProfileResult
from pytest_aiperf.slo import (
    SLOError,
    check_goodput,
    evaluate,
    implicit_objectives,
    parse_objective,
)


@pytest.mark.parametrize("key", ["adj_request_latency", "adj_request_latency.avg",
                                 "adj_time_to_first_token.max", "adj_request_latency.std"])
def test_an_adjusted_metric_has_only_percentiles_and_a_count(key: str) -> None:
    with pytest.raises(SLOError, match=r"has only percentiles and a count.*valid statistics: "
                                       r"p1, .*p99, count"):
        parse_objective(key, "< 100 ms")


def test_an_adjusted_percentile_and_count_are_fine() -> None:
    assert parse_objective("adj_request_latency.p90", "< 100 ms").threshold == 100.0
    assert parse_objective("adj_request_latency.count", ">= 10").unit == "requests"


def test_a_unit_on_a_count_is_refused() -> None:
    with pytest.raises(SLOError, match="a count is a number of requests; write it without "
                                       "a unit"):
        parse_objective("request_latency.count", ">= 10 ms")


def _result(latencies: list[float], errors: int = 0) -> ProfileResult:
    metrics = {
        "request_latency": MetricResult("request_latency", "ms", {
            "avg": sum(latencies) / len(latencies), "p50": sorted(latencies)[len(latencies) // 2],
            "count": len(latencies)}, latencies),
        "request_count": MetricResult("request_count", "requests", {"avg": len(latencies)}),
        "error_request_count": MetricResult("error_request_count", "requests",
                                            {"avg": errors}),
        "request_error_rate": MetricResult("request_error_rate", "%", {
            "avg": 100 * errors / (len(latencies) + errors)}),
    }
    return ProfileResult("r", metrics, [], [], {"ok": True}, [], False, None, None)


def test_a_count_objective_compares_the_number_of_records() -> None:
    verdict, = evaluate([parse_objective("request_latency.count", ">= 4")], _result([1, 2, 3]))
    assert (verdict.measured, verdict.passed) == (3.0, False)


def test_verdicts_print_as_text_naming_measured_and_sent_requests() -> None:
    verdict, = evaluate([parse_objective("request_latency.p50", "< 1 ms")],
                        _result([5.0, 6.0, 7.0] * 3, errors=2))
    assert str(verdict) == repr(verdict) == (
        "FAIL request_latency.p50 = 6.00 ms [5.00, 7.00], needs < 1 ms (n=9, 11 requests "
        "sent)")


def test_too_few_values_for_a_bound_are_inconclusive_and_say_so() -> None:
    verdict, = evaluate([parse_objective("request_latency.p50", "< 1 ms")],
                        _result([5.0, 6.0, 7.0], errors=2))
    assert verdict.status == "INCONCLUSIVE" and verdict.interval == (None, None)
    assert "INCONCLUSIVE request_latency.p50 = 6.00 ms (no interval)" in str(verdict)
    assert verdict.note and "n >=" in verdict.note
    assert repr(verdict.objective) == "Objective('request_latency.p50 < 1 ms')"
    assert verdict.to_dict()["measured_requests"] == 3
    assert verdict.to_dict()["sent_requests"] == 5


@pytest.mark.parametrize(("goodput", "streams", "message"), [
    ({"inter_chunk_latency": 5}, True, "has many values per request"),
    ({"time_to_first_token": 100}, False, "needs a streaming profile"),
    ({"request_count": 3}, True, "is one number per run, not one per request"),
])  # fmt: skip
def test_goodput_keys_must_be_single_valued_metrics_the_profile_measures(
    goodput: dict[str, float], streams: bool, message: str
) -> None:
    with pytest.raises(SLOError, match=message + ".*usable here: .*request_latency"):
        check_goodput(goodput, streams=streams, produces_tokens=True)


def test_goodput_on_measured_metrics_is_accepted() -> None:
    check_goodput({"time_to_first_token": 100, "request_latency": 500}, streams=True,
                  produces_tokens=True)


@pytest.mark.parametrize(("threshold", "errors", "passed"), [
    (None, 0, True), (None, 1, False), (50.0, 1, True), (10.0, 1, False)])
def test_a_load_test_without_objectives_checks_its_requests_succeeded(
    threshold: float | None, errors: int, passed: bool
) -> None:
    objectives = implicit_objectives(threshold)
    assert [str(o) for o in objectives] == [
        f"request_error_rate <= {threshold or 0:g} % (implicit)"]
    verdict, = evaluate(objectives, _result([1.0, 2.0, 3.0], errors=errors))
    assert verdict.passed is passed
