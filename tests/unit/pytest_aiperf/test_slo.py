from __future__ import annotations

import math

import pytest

from aiperf.results import MetricResult, ProfileResult
from pytest_aiperf.slo import (
    SLOError,
    check_applicable,
    evaluate,
    format_table,
    parse_objective,
)


@pytest.mark.parametrize(("key", "value", "metric", "stat", "op", "threshold"), [
    ("time_to_first_token.p99", "< 250 ms", "time_to_first_token", "p99", "<", 250.0),
    ("request_latency.p90", "< 1.5 s", "request_latency", "p90", "<", 1500.0),
    ("inter_token_latency.p50", "<= 800 us", "inter_token_latency", "p50", "<=", 0.8),
    ("time_to_first_token", "< 2000000 ns", "time_to_first_token", "avg", "<", 2.0),
    ("output_token_throughput", ">= 500 tokens/s", "output_token_throughput", "avg", ">=",
     500.0),
    ("request_throughput", "> 20 req/s", "request_throughput", "avg", ">", 20.0),
    ("request_error_rate", "<= 1 %", "request_error_rate", "avg", "<=", 1.0),
    ("good_request_fraction", ">= 95 %", "good_request_fraction", "avg", ">=", 0.95),
    ("benchmark_duration", "< 500 ms", "benchmark_duration", "avg", "<", 0.5),
    ("adj_request_latency.p999", "< 2 s", "adj_request_latency", "p999", "<", 2000.0),
    ("request_latency.p50", "< 40", "request_latency", "p50", "<", 40.0),
])  # fmt: skip
def test_objectives_parse_and_convert_to_the_display_unit(
    key: str, value: str, metric: str, stat: str, op: str, threshold: float
) -> None:
    objective = parse_objective(key, value)
    assert (objective.metric, objective.stat, objective.op) == (metric, stat, op)
    assert objective.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("time_to_frist_token.p99", "< 1 ms", r"unknown metric 'time_to_frist_token'.*valid "
                                          r"metrics: .*time_to_first_token"),
    ("time_to_first_token.p100", "< 1 ms", r"unknown statistic 'p100'.*avg, min, max"),
    ("time_to_first_token.median", "< 1 ms", r"unknown statistic 'median'"),
    ("time_to_first_token.p99", "~ 1 ms", r"is not '<op> <number> \[unit\]'; operators: <, "
                                          r"<=, >, >="),
    ("time_to_first_token.p99", "< 1 tokens/s", r"unit 'tokens/s' does not fit "
                                                r"time_to_first_token.*valid units: ns, us"),
    ("request_throughput.p99", "> 1", r"one number per run"),
])  # fmt: skip
def test_mistakes_list_the_valid_choices(key: str, value: str, message: str) -> None:
    with pytest.raises(SLOError, match=message):
        parse_objective(key, value)


def test_streaming_only_objectives_need_a_streaming_profile() -> None:
    objective = parse_objective("time_to_first_token.p99", "< 1 s")
    with pytest.raises(SLOError, match="needs a streaming profile"):
        check_applicable([objective], {}, streams=False, produces_tokens=True)
    check_applicable([objective], {}, streams=True, produces_tokens=True)


def result_with(values: list[float], failures: int = 0) -> ProfileResult:
    import numpy as np

    stats = {"avg": float(np.mean(values)), "p99": float(np.percentile(values, 99)),
             "count": len(values)}
    metrics = {
        "request_latency": MetricResult("request_latency", "ms", stats, tuple(values)),
        "adj_request_latency": MetricResult("adj_request_latency", "ms", {"count": 1},
                                            tuple(values), failures),
        "request_count": MetricResult("request_count", "requests", {"avg": len(values)}),
    }
    return ProfileResult("r", metrics, [], [], {}, [], False, None, None)


def test_every_objective_is_evaluated_and_tabled() -> None:
    objectives = [parse_objective("request_latency.p99", "< 50 ms"),
                  parse_objective("request_latency.avg", "< 10 ms"),
                  parse_objective("request_latency.p999", "< 1 s")]
    # 400 values 10..40 ms: p99's upper bound (rank 400 at most) is 40 ms < 50 ms; the mean
    # 25 ms is far over 10 ms; p99.9 has no upper bound at n=400 (it needs 2995).
    verdicts = evaluate(objectives, result_with([10.0, 20.0, 30.0, 40.0] * 100))
    assert [v.status for v in verdicts] == ["PASS", "FAIL", "INCONCLUSIVE"]
    assert verdicts[0].count == 400 and verdicts[0].interval is not None
    assert verdicts[2].interval is not None and verdicts[2].interval[1] is None
    assert verdicts[2].needed is not None and verdicts[2].needed >= 2995
    table = format_table(verdicts)
    assert "request_latency.avg" in table and "FAIL" in table and "25.00 ms" in table
    assert "INCONCLUSIVE" in table and "n=400" in table and "whole run" in table


def test_error_adjusted_percentiles_count_failures_as_infinitely_slow() -> None:
    objective = parse_objective("adj_request_latency.p90", "< 1 s")
    (verdict,) = evaluate([objective], result_with([1.0, 2.0, 3.0] * 20, failures=20))
    assert math.isinf(verdict.measured or 0) and verdict.status == "FAIL"
    assert verdict.count == 80


def test_a_metric_missing_from_the_run_fails_as_not_measured() -> None:
    objective = parse_objective("time_to_first_token.p99", "< 1 s")
    (verdict,) = evaluate([objective], result_with([1.0]))
    assert verdict.measured is None and not verdict.passed
    assert "not measured" in format_table([verdict])
