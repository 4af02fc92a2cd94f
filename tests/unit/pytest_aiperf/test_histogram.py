"""The -v latency histogram: buckets and block heights from known values, and the line a
load test's run gets (its judged metric, min/max labels, n, p50, p99, verdicts)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from aiperf.results import MetricResult, ProfileResult
from pytest_aiperf.histogram import (
    BLOCKS,
    blocks,
    buckets,
    histogram_line,
    record_line,
    sketch_buckets,
    sketch_line,
)
from pytest_aiperf.session import LoadTestRecord
from pytest_aiperf.slo import Verdict, parse_objective


def test_buckets_span_min_to_max_with_both_ends_counted() -> None:
    counts, low, high = buckets([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20], bins=5)
    assert (low, high) == (10.0, 20.0)
    assert counts.tolist() == [2, 2, 2, 2, 3]  # numpy's last bucket is closed: 18, 19, 20


def test_buckets_ignore_what_is_not_a_finite_value() -> None:
    counts, low, high = buckets([1.0, math.nan, 2.0, math.inf], bins=2)
    assert counts.tolist() == [1, 1] and (low, high) == (1.0, 2.0)
    counts, low, high = buckets([math.nan], bins=3)
    assert counts.tolist() == [0, 0, 0] and math.isnan(low) and math.isnan(high)


def test_equal_values_fill_the_first_bucket() -> None:
    counts, low, high = buckets([5.0, 5.0, 5.0], bins=4)
    assert counts.tolist() == [3, 0, 0, 0] and low == high == 5.0


def test_block_heights_are_proportional_and_a_lone_value_still_shows() -> None:
    assert blocks([0, 1, 4, 8, 16, 100]) == " ▁▁▁▂█"
    assert blocks([8, 7, 6, 5, 4, 3, 2, 1]) == "█▇▆▅▄▃▂▁"
    assert blocks([0, 0]) == "  "


def test_the_line_has_min_max_labels_n_and_percentiles() -> None:
    values = [10.0] * 90 + [20.0] * 9 + [110.0]
    line = histogram_line("Request Latency", values, "ms", bins=10)
    assert line == "Request Latency  10.0 ms █▁       ▁ 110 ms  (n=100, p50 10.0, p99 20.9)"
    assert histogram_line("Request Latency", [], "ms") is None


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), max_size=200),
       st.integers(min_value=1, max_value=40))
def test_every_finite_value_is_in_one_bucket(values: list[float], bins: int) -> None:
    counts, low, high = buckets(values, bins)
    finite = [v for v in values if math.isfinite(v)]
    assert len(counts) == bins and int(counts.sum()) == len(finite)
    drawn = blocks(counts)
    assert len(drawn) == bins and set(drawn) <= set(BLOCKS) | {" "}
    if finite:
        assert (low, high) == (min(finite), max(finite))
        assert drawn.count(" ") == int((counts == 0).sum()) and "█" in drawn


def _result(**values: list[float]) -> ProfileResult:
    metrics = {tag: MetricResult(tag, "ms", {"avg": float(sum(v))},
                                 np.asarray(v, dtype=np.float64)) for tag, v in values.items()}
    return ProfileResult(run_id="r", metrics=metrics, records=[], error_summary=[],
                         invariant={}, warnings=[], was_cancelled=False, start_time=None,
                         end_time=None)


def test_a_run_shows_the_metric_its_objectives_judge_with_its_verdicts() -> None:
    result = _result(request_latency=[50.0, 60.0], time_to_first_token=[10.0, 12.0])
    ttft = Verdict(parse_objective("time_to_first_token.p99", "< 1 s"), 12.0, True, 2, 2)
    rate = Verdict(parse_objective("request_error_rate", "< 1 %"), 0.0, False, 2, 2)
    record = LoadTestRecord("t.py::test_a", "chat c=1 n=2", result=result,
                            verdicts=[ttft, rate])
    line = record_line(record)
    assert line is not None
    assert line.startswith("Time to First Token  10.0 ms █" + " " * 22 + "█ 12.0 ms")
    assert line.endswith(" 12.0 ms  (n=2, p50 11.0, p99 12.0)  verdicts: 1 PASS, 1 FAIL")
    # Without a latency objective: request latency, the one every run has.
    plain = LoadTestRecord("t.py::test_b", "chat c=1 n=2", result=result)
    assert (record_line(plain) or "").startswith("Request Latency  50.0 ms")


def test_a_run_without_values_has_no_line() -> None:
    assert record_line(LoadTestRecord("t.py::test_a", "chat", outcome="ERROR")) is None
    empty = LoadTestRecord("t.py::test_a", "chat", result=_result(request_latency=[]))
    assert record_line(empty) is None


def test_a_sketched_run_shows_its_real_request_count_and_the_exact_buckets_within_accuracy(
        ) -> None:
    from aiperf.statistics.sketch import MetricSketch

    values = np.random.default_rng(3).lognormal(np.log(80.0), 0.4, size=200)
    sketch = MetricSketch(0.01)
    sketch.add(values)
    metric = MetricResult("request_latency", "ms", {"avg": float(values.mean())},
                          sketch=sketch)
    result = ProfileResult(run_id="r", metrics={"request_latency": metric}, records=[],
                           error_summary=[], invariant={}, warnings=[], was_cancelled=False,
                           start_time=None, end_time=None)
    line = record_line(LoadTestRecord("t.py::test_a", "chat c=1 n=200", result=result))
    assert line is not None and "(n=200, p50 " in line  # the requests, not 1000 points
    counts, low, high = sketch_buckets(sketch)
    assert (low, high) == (values.min(), values.max())  # min and max are kept exactly
    exact, _, _ = buckets(values)
    assert counts.sum() == 200
    # Each value is placed within 1 % of itself: it can only move to a neighbouring
    # bucket, and only when it lies within 1 % of an edge.
    width = (high - low) / len(counts)
    near_edge = sum(int(np.any(np.abs(low + width * np.arange(1, len(counts)) - v)
                               <= 0.01 * v)) for v in values)
    assert int(np.abs(np.cumsum(counts) - np.cumsum(exact)).max()) <= near_edge
    assert sketch_line("L", MetricSketch(0.01), "ms") is None  # an empty sketch
