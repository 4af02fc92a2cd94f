"""Run-level numbers against the reference formulas, computed by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import msgspec
import numpy as np
import pytest

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord, cancellation
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import compute_results, per_request_values
from aiperf.metrics.definitions import BY_TAG
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult

MS = 1_000_000


def ok(cid: int, start_ms: int, ttft_ms: int, latency_ms: int, osl: int, isl: int = 10,
       phase: int = PROFILING, gaps: list[int] | None = None) -> MetricRecord:
    start = start_ms * MS
    return MetricRecord(cid, phase, "w", start - MS, start, 0, start + latency_ms * MS,
                        ttft_ms * MS, -1, latency_ms * MS, isl, osl, gaps or [])


def failed(cid: int, start_ms: int) -> MetricRecord:
    return MetricRecord(cid, PROFILING, "w", start_ms * MS, start_ms * MS, 0,
                        (start_ms + 5) * MS, -1, -1, -1, 10, 0, [],
                        error=ErrorInfo(500, "Internal Server Error", "boom"))


def results(records: list[MetricRecord], **config: object) -> dict:
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    return compute_results(records, UserConfig(streaming=True, **config), meta,  # type: ignore[arg-type]
                           [(0, len(records))], streaming=True)


def test_latency_statistics_follow_numpy_linear_percentiles_and_population_std() -> None:
    records = [ok(i, 100 * i, 10 + i, 50 + 10 * i, osl=5) for i in range(5)]
    m = results(records)["metrics"]
    latencies = np.array([50, 60, 70, 80, 90], dtype=float)
    assert m["request_latency"]["avg"] == pytest.approx(70)
    assert m["request_latency"]["std"] == pytest.approx(latencies.std())
    assert m["request_latency"]["p90"] == pytest.approx(np.percentile(latencies, 90))
    assert m["request_latency"]["unit"] == "ms"
    # ITL = (latency - TTFT) / (OSL - 1)
    itl = [(50 + 10 * i - (10 + i)) / 4 for i in range(5)]
    assert m["inter_token_latency"]["avg"] == pytest.approx(np.mean(itl))
    assert m["output_token_throughput_per_user"]["avg"] == pytest.approx(
        np.mean([1000 / x for x in itl]))


def test_throughputs_divide_by_first_start_to_last_end() -> None:
    records = [ok(0, 0, 5, 100, osl=4, isl=6), ok(1, 50, 5, 150, osl=6, isl=4)]
    m = results(records)["metrics"]
    assert m["benchmark_duration"]["avg"] == pytest.approx(0.2)
    assert m["request_throughput"]["avg"] == pytest.approx(2 / 0.2)
    assert m["output_token_throughput"]["avg"] == pytest.approx(10 / 0.2)
    assert m["total_token_throughput"]["avg"] == pytest.approx(20 / 0.2)


def test_warmup_is_excluded_from_every_statistic() -> None:
    records = [ok(0, 0, 999, 999, osl=3, phase=WARMUP), ok(1, 1000, 10, 20, osl=3)]
    out = results(records)
    assert out["metrics"]["request_count"]["avg"] == 1
    assert out["metrics"]["time_to_first_token"]["max"] == 10
    assert out["metrics"]["benchmark_duration"]["avg"] == pytest.approx(0.02)
    assert [r["metadata"]["benchmark_phase"] for r in out["records"]] == ["warmup", "profiling"]


def test_errors_count_and_error_adjusted_percentiles_use_inf_and_nearest() -> None:
    records = [ok(i, 10 * i, 5, 10 + i, osl=2) for i in range(3)] + [failed(3, 40)]
    out = results(records)
    m = out["metrics"]
    assert m["error_request_count"]["avg"] == 1
    assert m["request_error_rate"]["avg"] == pytest.approx(25.0)
    adj = np.percentile([10, 11, 12, np.inf], 50, method="nearest")
    assert m["adj_request_latency"]["p50"] == pytest.approx(adj)
    assert m["adj_request_latency"]["p99"] is None  # +inf: a failed request
    assert out["error_summary"] == [{"error_details": {"code": 500,
        "type": "Internal Server Error", "message": "boom"}, "count": 1}]


def test_goodput_counts_requests_meeting_every_objective() -> None:
    records = [ok(0, 0, 10, 100, osl=3), ok(1, 0, 300, 400, osl=3), ok(2, 0, 10, 2000, osl=3),
               failed(3, 0)]
    m = results(records, goodput={"time_to_first_token": 200, "request_latency": 1000})[
        "metrics"]
    assert m["good_request_count"]["avg"] == 1
    assert m["good_request_fraction"]["avg"] == pytest.approx(0.25)
    assert m["goodput"]["avg"] == pytest.approx(1 / m["benchmark_duration"]["avg"])


def test_inter_chunk_latency_pools_gaps_over_requests() -> None:
    records = [ok(0, 0, 1, 10, osl=3, gaps=[2 * MS, 4 * MS]), ok(1, 0, 1, 10, osl=2,
                                                                  gaps=[6 * MS])]
    assert results(records)["metrics"]["inter_chunk_latency"]["avg"] == pytest.approx(4.0)


def test_a_metric_has_several_values_per_request_exactly_when_its_spec_says_so() -> None:
    rec = ok(0, 0, 1, 10, osl=3, gaps=[2 * MS, 4 * MS])
    rec.http_reused = 1
    values = per_request_values(rec, streaming=True)
    assert {tag for tag, v in values.items() if isinstance(v, list)} == {
        tag for tag in values if BY_TAG[tag].list_valued} == {"inter_chunk_latency"}


def test_the_credit_invariant_reports_missing_and_duplicate_records() -> None:
    records = [ok(0, 0, 1, 2, osl=2), ok(0, 0, 1, 2, osl=2), ok(2, 0, 1, 2, osl=2),
               ok(7, 0, 1, 2, osl=2)]
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    out = compute_results(records, UserConfig(streaming=True), meta,  # type: ignore[arg-type]
                          issued_ranges=[(0, 3)], streaming=True)
    assert out["invariant"]["ok"] is False
    assert out["invariant"]["missing_credit_ids"] == [1]
    assert out["invariant"]["duplicate_credit_ids"] == [0]
    assert out["invariant"]["unexpected_credit_ids"] == [7]
    assert any("credit invariant broken" in w for w in out["warnings"])


def test_the_table_written_to_a_file_is_the_table_kept_in_memory(tmp_path: Path) -> None:
    records = [ok(0, 0, 999, 999, osl=3, phase=WARMUP), ok(1, 0, 1, 10, osl=3, gaps=[MS]),
               failed(2, 5)]
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    in_memory = results(records)
    on_disk = compute_results(records, UserConfig(streaming=True), meta,  # type: ignore[arg-type]
                              [(0, 3)], streaming=True, export_to=tmp_path / "t.jsonl")
    lines = (tmp_path / "t.jsonl").read_bytes().splitlines()
    assert [msgspec.json.decode(line) for line in lines] == in_memory["records"]
    assert on_disk["records_path"] == str(tmp_path / "t.jsonl") and "records" not in on_disk
    assert on_disk["records_count"] == 3
    assert on_disk["metrics"] == in_memory["metrics"]


def test_records_may_arrive_as_a_one_pass_stream_with_their_count() -> None:
    records = [ok(i, 10 * i, 5, 10 + i, osl=2) for i in range(3)] + [failed(3, 40)]
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    streamed = compute_results(iter(records), UserConfig(streaming=True), meta,  # type: ignore[arg-type]
                               [(0, 4)], streaming=True, count=4)
    assert streamed == results(records)


def given_up(cid: int, start_ms: int, end_ms: int, reason: str, cancelled: bool = False
             ) -> MetricRecord:
    return MetricRecord(cid, PROFILING, "w", start_ms * MS, start_ms * MS, 0, end_ms * MS,
                        -1, -1, -1, 10, 0, [], error=cancellation(reason), cancelled=cancelled)


def test_requests_the_client_gave_up_on_are_errors_not_silently_dropped() -> None:
    # A server that never answers: every request is cut off (end of run, or a timeout).
    records = [given_up(0, 0, 3000, "cancelled: end of run", cancelled=True),
               given_up(1, 10, 1010, "request timeout: no complete response within 1s"),
               given_up(2, 20, 520, "first-byte timeout: no response within 0.5s")]
    out = results(records)
    m = out["metrics"]
    assert m["request_count"]["avg"] == 0 and m["error_request_count"]["avg"] == 3
    assert m["request_error_rate"]["avg"] == 100.0
    assert sum(e["count"] for e in out["error_summary"]) == 3
    assert {e["error_details"]["code"] for e in out["error_summary"]} == {499}
    assert {e["error_details"]["type"] for e in out["error_summary"]} == {
        "RequestCancellationError"}
    assert out["was_cancelled"] is True and out["cancelled_request_count"] == 1
    assert m["adj_request_latency"]["p50"] is None  # every request failed: infinitely slow


def test_client_side_queueing_counts_every_started_request_failed_or_not() -> None:
    # credit at start - 1 ms (ok) / at start (given_up); a request cut off before it was
    # sent has no start and no queueing value.
    unsent = given_up(2, 0, 0, "cancelled: end of run", cancelled=True)
    unsent.start_ns = 0
    records = [ok(0, 0, 5, 100, osl=4), given_up(1, 10, 20, "request timeout"), unsent]
    m = results(records)["metrics"]
    assert m["credit_to_start_latency"]["count"] == 2
    assert m["credit_to_start_latency"]["sum"] == pytest.approx(1.0)
    assert m["request_latency"]["count"] == 1


def test_the_benchmark_ends_at_the_last_response_not_at_a_cut_off_request() -> None:
    records = [ok(0, 0, 5, 100, osl=4), ok(1, 50, 5, 150, osl=4),
               given_up(2, 60, 5000, "cancelled: end of run", cancelled=True)]
    m = results(records)["metrics"]
    assert m["benchmark_duration"]["avg"] == pytest.approx(0.2)
    assert m["error_request_count"]["avg"] == 1 and m["request_count"]["avg"] == 2


def test_end_time_is_the_wall_clock_of_the_last_response_end() -> None:
    wall0 = 1_700_000_000 * 10**9
    first = ok(0, 0, 5, 100, osl=4)
    last = ok(1, 50, 5, 400, osl=4)       # ends at 450 ms, although it did not start last
    late = ok(2, 60, 5, 10, osl=4)        # the last start, ends at 70 ms
    for rec in (first, last, late):
        rec.wall_start_ns = wall0 + rec.start_ns
    out = results([first, last, late])
    assert out["start_time"] == dt.datetime.fromtimestamp(wall0 / 1e9, tz=dt.UTC).isoformat()
    assert out["end_time"] == dt.datetime.fromtimestamp(
        (wall0 + 450 * MS) / 1e9, tz=dt.UTC).isoformat()


def test_an_output_length_of_zero_is_a_value() -> None:
    out = results([ok(0, 0, 5, 100, osl=0), ok(1, 0, 5, 100, osl=4)])
    assert out["metrics"]["output_sequence_length"]["count"] == 2
    assert out["metrics"]["output_sequence_length"]["min"] == 0
    assert out["records"][0]["metrics"]["output_sequence_length"]["value"] == 0


def test_reasoning_and_output_token_counts_and_their_totals() -> None:
    thinking = ok(0, 0, 5, 100, osl=15)
    thinking.reasoning_tokens = 10
    thinking.ttfo_ns = 80 * MS
    plain = ok(1, 0, 5, 100, osl=4)
    out = results([thinking, plain])
    m = out["metrics"]
    assert m["reasoning_token_count"]["count"] == 1 and m["reasoning_token_count"]["avg"] == 10
    assert m["output_token_count"]["avg"] == pytest.approx((5 + 4) / 2)
    assert m["total_reasoning_tokens"] == {"unit": "tokens", "avg": 10}
    assert m["total_output_tokens"] == {"unit": "tokens", "avg": 9}
    assert m["time_to_first_output_token"]["max"] == 80
    # ITL spans every generated token, reasoning included: (100 - 5) / 14.
    assert out["records"][0]["metrics"]["inter_token_latency"]["value"] == pytest.approx(95 / 14)


def test_http_phases_are_per_request_metrics_in_ms_with_duration_and_total() -> None:
    rec = ok(0, 0, 5, 100, osl=4)
    (rec.http_blocked_ns, rec.http_dns_ns, rec.http_connecting_ns, rec.http_sending_ns,
     rec.http_waiting_ns, rec.http_receiving_ns, rec.http_reused) = (
        2 * MS, 1 * MS, 3 * MS, 1 * MS, 60 * MS, 39 * MS, 0)
    values = results([rec])["records"][0]["metrics"]
    got = {tag: v["value"] for tag, v in values.items() if tag.startswith("http_req_")}
    assert got == {"http_req_blocked": 2, "http_req_dns_lookup": 1, "http_req_connecting": 3,
                   "http_req_sending": 1, "http_req_waiting": 60, "http_req_receiving": 39,
                   "http_req_duration": 100, "http_req_total": 106,
                   "http_req_connection_reused": 0}
    assert values["http_req_waiting"]["unit"] == "ms"


def test_embeddings_have_no_output_length_even_of_zero() -> None:
    meta = plugins.get_metadata(PluginType.ENDPOINT, "embeddings")
    out = compute_results([ok(0, 0, 5, 100, osl=0)], UserConfig(endpoint_type="embeddings"),
                          meta, [(0, 1)], streaming=False)  # type: ignore[arg-type]
    assert "output_sequence_length" not in out["records"][0]["metrics"]
    assert "total_output_tokens" not in out["metrics"]


def test_the_timeline_has_every_profiling_request_and_which_metrics_it_carried() -> None:
    unsent = MetricRecord(4, PROFILING, "w", 700 * MS, 0, 0, 0, -1, -1, -1, 10, 0, [],
                          error=cancellation("cut before its send time"), cancelled=True)
    records = [ok(0, 0, 5, 100, osl=4, gaps=[MS, 2 * MS, 3 * MS]), ok(9, 0, 5, 50, osl=1,
               phase=WARMUP), failed(1, 300), ok(2, 200, 5, 60, osl=6, gaps=[4 * MS]),
               unsent]
    out = results(records)
    wire = out["timeline"]
    # 18 bytes a request (start, end, pattern id), warmup left out
    assert sum(memoryview(wire[k]).nbytes for k in ("start_ns", "end_ns", "pattern")) == 4 * 18
    result = ProfileResult.from_dict(out)
    timeline = result.timeline
    assert timeline.start_ns.tolist() == [0, 300 * MS, 200 * MS, 700 * MS]  # unsent: credit
    assert timeline.end_ns.tolist() == [100 * MS, 305 * MS, 260 * MS, 700 * MS]
    assert timeline.ok.tolist() == [True, False, True, False]
    assert timeline.osl.tolist() == [4, 0, 6, 0] and timeline.isl.tolist() == [10, 0, 10, 0]
    assert timeline.slot.tolist() == [-1] * 4
    # A value's record index says whose it is; a list-valued metric repeats it.
    assert list(result["request_latency"].record_index) == [0, 2]
    assert list(result["credit_to_start_latency"].record_index) == [0, 1, 2]
    assert list(result["inter_chunk_latency"].record_index) == [0, 0, 0, 2]
    assert list(result["inter_chunk_latency"].values) == [1.0, 2.0, 3.0, 4.0]


def test_a_list_metric_longer_than_two_bytes_can_count_widens_its_length_array() -> None:
    records = [ok(0, 0, 5, 100, osl=3, gaps=[MS, MS]),
               ok(1, 0, 5, 100, osl=3, gaps=[1] * 70_000)]
    result = ProfileResult.from_dict(results(records))
    index = np.asarray(result["inter_chunk_latency"].record_index)
    assert index[:3].tolist() == [0, 0, 1] and (index == 1).sum() == 70_000
