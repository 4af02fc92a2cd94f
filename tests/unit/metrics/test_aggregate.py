"""Run-level numbers against the reference formulas, computed by hand."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import compute_results
from aiperf.plugin import PluginType, plugins

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
                              [(0, 3)], streaming=True, export_to=tmp_path / "t.msgpack")
    assert msgspec.msgpack.decode((tmp_path / "t.msgpack").read_bytes()) == in_memory["records"]
    assert on_disk["records_path"] == str(tmp_path / "t.msgpack") and "records" not in on_disk
    assert on_disk["metrics"] == in_memory["metrics"]


def test_records_may_arrive_as_a_one_pass_stream_with_their_count() -> None:
    records = [ok(i, 10 * i, 5, 10 + i, osl=2) for i in range(3)] + [failed(3, 40)]
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    streamed = compute_results(iter(records), UserConfig(streaming=True), meta,  # type: ignore[arg-type]
                               [(0, 4)], streaming=True, count=4)
    assert streamed == results(records)
