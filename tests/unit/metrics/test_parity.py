"""AIPerf 0.13's derived metrics (aiperf/metrics/parity.py) on values whose answer is known
by hand, and the time-weighted statistics against identities that hold for any run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.metrics.definitions import AWAITING_AGGREGATION, BY_TAG, goodput_problem
from aiperf.metrics.parity import (
    USAGE_TAGS,
    add_request_values,
    add_usage_values,
    result_request_values,
    run_metrics,
    sweep_metrics,
    time_weighted_stats,
)
from aiperf.results import MetricResult


def test_per_request_formulas() -> None:
    values = {"request_latency": 250.0, "time_to_first_token": 50.0,
              "input_sequence_length": 100, "output_sequence_length": 21}
    add_request_values(values)
    assert values["decode_duration"] == 200.0  # ms: latency - TTFT
    assert values["e2e_output_token_throughput"] == pytest.approx(84.0)  # 21 / 0.25 s
    assert values["prefill_throughput_per_user"] == pytest.approx(2000.0)  # 100 / 0.05 s


def test_without_streaming_only_the_end_to_end_throughput() -> None:
    values = {"request_latency": 500.0, "input_sequence_length": 10,
              "output_sequence_length": 5}
    add_request_values(values)
    assert values["e2e_output_token_throughput"] == pytest.approx(10.0)
    assert "decode_duration" not in values and "prefill_throughput_per_user" not in values


def test_zero_durations_give_no_rate_rather_than_infinity() -> None:
    values = {"request_latency": 0.0, "time_to_first_token": 0.0,
              "input_sequence_length": 10, "output_sequence_length": 5}
    add_request_values(values)
    assert values == {"request_latency": 0.0, "time_to_first_token": 0.0,
                      "input_sequence_length": 10, "output_sequence_length": 5,
                      "decode_duration": 0.0}


def test_a_failed_request_gets_nothing() -> None:
    values = {"credit_to_start_latency": 1.0}
    add_request_values(values)
    assert values == {"credit_to_start_latency": 1.0}


def test_usage_values_only_where_the_server_sent_them() -> None:
    values: dict[str, float] = {}
    add_usage_values(values, 17, 8, 25)
    assert values == {"usage_prompt_tokens": 17, "usage_completion_tokens": 8,
                      "usage_total_tokens": 25}
    values = {}
    add_usage_values(values, 17, -1, -1)
    assert values == {"usage_prompt_tokens": 17}
    values = {}
    add_usage_values(values, 5, 0, 5, 0, produces_tokens=False)  # embeddings
    assert values == {"usage_prompt_tokens": 5}
    values = {}
    add_usage_values(values, -1, 45, 170, 7)
    assert values == {"usage_completion_tokens": 45, "usage_total_tokens": 170,
                      "usage_reasoning_tokens": 7}


def test_run_metrics_from_the_statistics() -> None:
    metrics = {"input_sequence_length": {"unit": "tokens", "sum": 680.0},
               "output_sequence_length": {"unit": "tokens", "sum": 320.0},
               "usage_prompt_tokens": {"unit": "tokens", "sum": 680.0}}
    out = run_metrics(metrics, duration_s=2.0)
    assert out == {
        "total_isl": {"unit": "tokens", "avg": 680.0},
        "total_osl": {"unit": "tokens", "avg": 320.0},
        "total_usage_prompt_tokens": {"unit": "tokens", "avg": 680.0},
        "input_token_throughput": {"unit": "tokens/sec", "avg": 340.0},
    }
    assert run_metrics({}, 2.0) == {}


def test_time_weighted_stats_of_a_known_step_function() -> None:
    # 0 on [0, 1), 2 on [1, 4), 1 on [4, 10): avg (0 + 6 + 6) / 10 = 1.2.
    stats = time_weighted_stats(np.array([1.0, 4.0]), np.array([2.0, 1.0]), 0.0, 10.0)
    assert stats["avg"] == pytest.approx(1.2)
    assert (stats["min"], stats["max"]) == (0.0, 2.0)
    var = (1 * (0 - 1.2) ** 2 + 3 * (2 - 1.2) ** 2 + 6 * (1 - 1.2) ** 2) / 10
    assert stats["std"] == pytest.approx(var ** 0.5)
    # Time at or below: 0 -> 10 %, 1 -> 70 %, 2 -> 100 %.
    assert (stats["p50"], stats["p90"], stats["p95"], stats["p99"]) == (1.0, 2.0, 2.0, 2.0)


def test_effective_concurrency_of_two_overlapping_requests() -> None:
    # [0, 4) and [2, 6) (ns): 1, then 2 on [2, 4), then 1: avg 8 / 6.
    out = sweep_metrics(np.array([0, 2]), np.array([4, 6]))
    assert out["effective_concurrency"]["unit"] == "requests"
    assert out["effective_concurrency"]["avg"] == pytest.approx(8 / 6)
    assert out["effective_concurrency"]["max"] == 2.0
    assert out["effective_concurrency"]["min"] == 1.0
    assert "tokens_in_flight" not in out


def test_back_to_back_requests_never_overlap() -> None:
    out = sweep_metrics(np.array([0, 5]), np.array([5, 10]))
    assert out["effective_concurrency"]["max"] == 1.0
    assert out["effective_concurrency"]["avg"] == pytest.approx(1.0)


def test_tokens_in_flight_holds_input_from_start_and_output_from_first_token() -> None:
    # One request [0, 10), first token at 4, ISL 100, OSL 20: 100 on [0, 4), 120 on [4, 10).
    out = sweep_metrics(np.array([0]), np.array([10]), np.array([4.0]), np.array([100]),
                        np.array([20]))
    tif = out["tokens_in_flight"]
    assert tif["unit"] == "tokens"
    assert tif["avg"] == pytest.approx((100 * 4 + 120 * 6) / 10)
    assert (tif["min"], tif["max"], tif["p50"]) == (100.0, 120.0, 120.0)


def test_with_chunk_gaps_output_tokens_arrive_chunk_by_chunk() -> None:
    # [0, 10), first token at 4, then chunks at 6 and 8 carrying (5 - 1) / 2 tokens each:
    # 100 on [0, 4), 101 on [4, 6), 103 on [6, 8), 105 on [8, 10).
    out = sweep_metrics(np.array([0]), np.array([10]), np.array([4.0]), np.array([100]),
                        np.array([5]), (np.array([2.0, 2.0]), np.array([0, 0])))
    tif = out["tokens_in_flight"]
    assert tif["avg"] == pytest.approx((100 * 4 + 101 * 2 + 103 * 2 + 105 * 2) / 10)
    assert (tif["min"], tif["max"]) == (100.0, 105.0)


def test_chunk_times_restart_at_each_request() -> None:
    # Two requests, gaps 1,1 and 3: chunks at 2,3 (of the first, from 1) and 8 (from 5).
    out = sweep_metrics(np.array([0, 4]), np.array([4, 10]), np.array([1.0, 5.0]),
                        np.array([0, 0]), np.array([3, 2]),
                        (np.array([1.0, 1.0, 3.0]), np.array([0, 0, 1])))
    # First: 1 on [1, 2), 2 on [2, 3), 3 on [3, 4). Second: 1 on [5, 8), 2 on [8, 10).
    assert out["tokens_in_flight"]["avg"] == pytest.approx((1 + 2 + 3 + 3 + 4) / 10)
    assert out["tokens_in_flight"]["max"] == 3.0


def test_a_streamed_request_without_gaps_holds_only_its_input() -> None:
    out = sweep_metrics(np.array([0, 0]), np.array([10, 10]), np.array([5.0, 5.0]),
                        np.array([10, 10]), np.array([1, 4]),
                        (np.array([2.0]), np.array([1])))
    # Request 0: one chunk, so no gap: 10 input tokens only. Request 1: 10 input, 1
    # output from 5, 3 more at 7.
    assert out["tokens_in_flight"]["avg"] == pytest.approx(
        (20 * 10 + 1 * 5 + 3 * 3) / 10)


def test_not_streamed_requests_hold_no_tokens_as_in_aiperf() -> None:
    out = sweep_metrics(np.array([0]), np.array([10]), np.array([np.nan]), np.array([100]),
                        np.array([20]))
    assert "tokens_in_flight" not in out
    assert out["effective_concurrency"]["avg"] == 1.0


def test_nothing_ran_nothing_reported() -> None:
    assert sweep_metrics(np.array([5]), np.array([5])) == {}


requests = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(1, 5_000), st.floats(0, 1),
              st.integers(0, 4000), st.integers(0, 500)),
    min_size=1, max_size=60)


@given(requests)
@settings(max_examples=150, deadline=None)
def test_time_averages_are_the_areas_over_the_span(
    drawn: list[tuple[int, int, float, int, int]]
) -> None:
    """Whatever the overlap: avg concurrency is the summed request time over the span
    (Little's law), and avg tokens in flight the summed token-time over the span."""
    start = np.array([s for s, *_ in drawn], dtype=np.int64)
    length = np.array([n for _, n, *_ in drawn], dtype=np.int64)
    end = start + length
    first = start + np.floor(length * np.array([f for _, _, f, *_ in drawn]))
    isl = np.array([i for *_, i, _ in drawn])
    osl = np.array([o for *_, o in drawn])
    out = sweep_metrics(start, end, first, isl, osl)
    span = float(end.max() - start.min())
    conc = out["effective_concurrency"]
    assert conc["avg"] == pytest.approx(length.sum() / span, rel=1e-9)
    assert 0 <= conc["min"] <= conc["p50"] <= conc["p90"] <= conc["p99"] <= conc["max"]
    assert conc["max"] <= len(drawn)
    prefill = first > start
    decode = end > first
    area = float((isl * (end - start))[prefill].sum() + (osl * (end - first))[decode].sum())
    if prefill.any() or decode.any():
        assert out["tokens_in_flight"]["avg"] == pytest.approx(area / span, rel=1e-9,
                                                               abs=1e-9)
        assert out["tokens_in_flight"]["max"] <= isl.sum() + osl.sum()


def test_the_new_tags_are_defined_as_aiperf_names_them() -> None:
    units = {"usage_prompt_tokens": "tokens", "usage_completion_tokens": "tokens",
             "usage_total_tokens": "tokens", "total_usage_prompt_tokens": "tokens",
             "total_usage_completion_tokens": "tokens", "total_usage_total_tokens": "tokens",
             "total_isl": "tokens", "total_osl": "tokens",
             "input_token_throughput": "tokens/sec", "effective_concurrency": "requests",
             "tokens_in_flight": "tokens", "prefill_throughput_per_user": "tokens/sec/user",
             "decode_duration": "ms", "e2e_output_token_throughput": "tokens/sec/user"}
    for tag, unit in units.items():
        assert BY_TAG[tag].unit == unit, tag


def test_the_usage_metrics_are_measured_per_request_now() -> None:
    assert not AWAITING_AGGREGATION
    for tag in USAGE_TAGS:
        assert goodput_problem(tag, True, True) is None, tag
    # Embeddings: the server's prompt count only, as in AIPerf.
    assert goodput_problem("usage_prompt_tokens", False, False) is None
    assert goodput_problem("usage_total_tokens", False, False) is not None


@given(requests, st.lists(st.lists(st.integers(0, 400), max_size=6), min_size=60,
                          max_size=60))
@settings(max_examples=150, deadline=None)
def test_with_chunk_gaps_the_average_is_each_tokens_time_held(
    drawn: list[tuple[int, int, float, int, int]], gaps_of: list[list[int]]
) -> None:
    """Each output token counts from its chunk (capped at the request's end) to the end."""
    start = np.array([s for s, *_ in drawn], dtype=np.int64)
    end = start + np.array([n for _, n, *_ in drawn], dtype=np.int64)
    first = start + np.floor((end - start) * np.array([f for _, _, f, *_ in drawn]))
    isl = np.array([i for *_, i, _ in drawn])
    osl = np.array([o for *_, o in drawn])
    gaps = [g for r in range(len(drawn)) for g in gaps_of[r]]
    owner = [r for r in range(len(drawn)) for _ in gaps_of[r]]
    out = sweep_metrics(start, end, first, isl, osl,
                        (np.array(gaps, dtype=float), np.array(owner, dtype=np.int64)))
    area = float((isl * (end - start))[first > start].sum())
    for r in range(len(drawn)):
        if not gaps_of[r] or osl[r] < 1:
            continue
        chunks = np.minimum(first[r] + np.cumsum(gaps_of[r]), end[r])
        area += (end[r] - first[r]) + ((osl[r] - 1) / len(gaps_of[r])) * float(
            (end[r] - chunks).sum())
    span = float(end.max() - start.min())
    if "tokens_in_flight" in out:
        assert out["tokens_in_flight"]["avg"] == pytest.approx(area / span, rel=1e-9,
                                                               abs=1e-6)
    else:
        assert area == 0


def _metric(tag: str, values: list[float], index: list[int]) -> MetricResult:
    return MetricResult(tag, BY_TAG[tag].unit, {}, np.array(values, dtype=float),
                        record_index=np.array(index, dtype=np.int32))


def test_host_side_values_align_requests_by_their_index() -> None:
    # Requests 0..3: request 1 failed (no values), request 3 was not streamed (no TTFT).
    metrics = {
        "request_latency": _metric("request_latency", [100.0, 80.0, 40.0], [0, 2, 3]),
        "time_to_first_token": _metric("time_to_first_token", [20.0, 0.0], [0, 2]),
        "input_sequence_length": _metric("input_sequence_length", [10, 12, 14], [0, 2, 3]),
        "output_sequence_length": _metric("output_sequence_length", [5, 4, 2], [0, 2, 3]),
    }
    out = result_request_values(metrics)
    decode, index = out["decode_duration"]
    assert decode.tolist() == [80.0, 80.0] and index.tolist() == [0, 2]
    e2e, index = out["e2e_output_token_throughput"]
    assert e2e.tolist() == pytest.approx([50.0, 50.0, 50.0]) and index.tolist() == [0, 2, 3]
    prefill, index = out["prefill_throughput_per_user"]  # TTFT 0: no rate
    assert prefill.tolist() == pytest.approx([500.0]) and index.tolist() == [0]
    # The same as request by request.
    one = {"request_latency": 100.0, "time_to_first_token": 20.0,
           "input_sequence_length": 10, "output_sequence_length": 5}
    add_request_values(one)
    assert (one["decode_duration"], one["e2e_output_token_throughput"],
            one["prefill_throughput_per_user"]) == pytest.approx((80.0, 50.0, 500.0))


def test_host_side_values_need_the_runs_values() -> None:
    assert result_request_values({}) == {}
