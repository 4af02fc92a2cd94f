"""Real profiles through the mesh against the mock server: metrics, modes and accounting."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult
from tests.harness.slow_processor import DELAY_ENV, SlowRecordProcessor


def assert_accounted(result: ProfileResult, sent: int) -> None:
    """Every credit has exactly one record, and the counts add up."""
    assert result.invariant["ok"], result.invariant
    assert result.invariant["credits_issued"] == sent
    assert len(result.records) == sent
    assert len({r["metadata"]["credit_id"] for r in result.records}) == sent


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
@pytest.mark.parametrize("streaming", [True, False])
def test_token_endpoints_report_the_requested_output_length(
    mesh: Mesh, mock_server: MockServerProcess, endpoint: str, streaming: bool
) -> None:
    result = mesh.run(url=mock_server.url, endpoint_type=endpoint, streaming=streaming,
                      concurrency=4, request_count=40, osl=12, isl=20)
    assert_accounted(result, 40)
    assert result.request_count == 40 and result.error_count == 0
    assert result["output_sequence_length"].avg == 12
    assert result["input_sequence_length"].avg == 20
    assert ("time_to_first_token" in result) is streaming
    assert ("inter_token_latency" in result) is streaming
    assert result["request_throughput"].avg > 0


def test_embeddings_have_latency_but_no_token_metrics(
    mesh: Mesh, mock_server: MockServerProcess
) -> None:
    result = mesh.run(url=mock_server.url, endpoint_type="embeddings", concurrency=2,
                      request_count=10, isl=5)
    assert_accounted(result, 10)
    assert result["request_latency"].count == 10
    assert "output_sequence_length" not in result and "time_to_first_token" not in result


def test_warmup_records_are_exported_but_excluded(
    mesh: Mesh, mock_server: MockServerProcess
) -> None:
    result = mesh.run(url=mock_server.url, concurrency=2, request_count=10,
                      warmup_request_count=4)
    assert_accounted(result, 14)
    phases = [r["metadata"]["benchmark_phase"] for r in result.records]
    assert phases.count("warmup") == 4 and result.request_count == 10


def test_runs_on_one_mesh_do_not_leak_into_each_other(
    mesh: Mesh, mock_server: MockServerProcess
) -> None:
    first = mesh.run(url=mock_server.url, concurrency=2, request_count=7)
    second = mesh.run(url=mock_server.url, concurrency=3, request_count=5)
    assert (first.request_count, second.request_count) == (7, 5)


def test_an_unreachable_endpoint_gives_one_error_record_per_request(mesh: Mesh) -> None:
    result = mesh.run(url="http://127.0.0.1:9", concurrency=2, request_count=6,
                      request_timeout_seconds=5)
    assert_accounted(result, 6)
    assert result.request_count == 0 and result.error_count == 6
    details = result.error_summary[0]["error_details"]
    assert details["type"] == "ClientConnectorError" and details["code"] is None
    assert result["request_error_rate"].avg == 100.0


@pytest.mark.parametrize(("fault", "error_type"), [
    ("disconnect", "ClientPayloadError"),
    ("truncate", "IncompleteStream"),
    ("malformed", "InvalidResponse"),
])  # fmt: skip
def test_stream_faults_become_error_records(mesh: Mesh, fault: str, error_type: str) -> None:
    with MockServerProcess(tokens=8, fault=fault, fault_rate=0.5, seed=3) as server:
        result = mesh.run(url=server.url, streaming=True, concurrency=4, request_count=30)
    assert_accounted(result, 30)
    assert 0 < result.error_count < 30
    assert result.request_count + result.error_count == 30
    assert {e["error_details"]["type"] for e in result.error_summary} == {error_type}


def test_http_errors_keep_status_and_body(mesh: Mesh) -> None:
    with MockServerProcess(error_rate=1.0, error_codes=[503]) as server:
        result = mesh.run(url=server.url, concurrency=2, request_count=8)
    assert_accounted(result, 8)
    (summary,) = result.error_summary
    assert summary["count"] == 8
    assert summary["error_details"]["code"] == 503
    assert "injected error 503" in summary["error_details"]["message"]


def test_rate_limits_are_errors_with_code_429(mesh: Mesh) -> None:
    with MockServerProcess(fault="rate_limit", fault_rate=0.5, seed=1) as server:
        result = mesh.run(url=server.url, concurrency=2, request_count=20)
    assert_accounted(result, 20)
    assert {e["error_details"]["code"] for e in result.error_summary} == {429}


def test_a_stalled_stream_times_out_as_an_error(mesh: Mesh) -> None:
    with MockServerProcess(fault="stall", fault_rate=1.0, stall_seconds=30) as server:
        result = mesh.run(url=server.url, streaming=True, concurrency=2, request_count=2,
                          request_timeout_seconds=1)
    assert_accounted(result, 2)
    # A timed-out request is AIPerf's cancellation error (code 499), as a cancelled one is.
    assert result.error_summary[0]["error_details"]["type"] in {
        "RequestTimeout", "RequestCancellationError"}
    assert result.error_count == 2


def test_duration_mode_cancels_what_is_in_flight_after_the_grace_period(mesh: Mesh) -> None:
    with MockServerProcess(fault="stall", fault_rate=0.3, stall_seconds=30, seed=2) as server:
        result = mesh.run(url=server.url, streaming=True, concurrency=4,
                          benchmark_duration=1.0, benchmark_grace_period=0.5)
    sent = result.invariant["credits_issued"]
    assert_accounted(result, sent)
    cancelled = [r for r in result.records if r["metadata"]["was_cancelled"]]
    assert result.was_cancelled and cancelled
    assert all(r["error"]["type"] == "RequestCancellationError" for r in cancelled)
    # Cancelled requests are error records, counted once.
    assert result.request_count + result.error_count == sent
    assert result.error_count >= len(cancelled)


def test_request_rate_sends_credits_on_schedule(mesh: Mesh, mock_server: MockServerProcess) -> None:
    result = mesh.run(url=mock_server.url, request_rate=50, arrival_pattern="constant",
                      request_count=20)
    assert_accounted(result, 20)
    starts = sorted(r["metadata"]["request_start_ns"] for r in result.records)
    # Constant arrivals 20 ms apart: the run cannot be faster than its schedule.
    assert (starts[-1] - starts[0]) / 1e6 >= 19 * 20 * 0.95
    assert result["credit_to_start_latency"].count == 20
    assert result["credit_to_start_latency"].min >= 0  # never sent before its time


def test_fixed_schedule_replays_trace_timestamps(mesh: Mesh, mock_server: MockServerProcess,
                                                 tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(json.dumps({"timestamp": t, "input_length": 8, "output_length": 3,
                                           "hash_ids": [1, 2][: 1 + t // 200]})
                               for t in (0, 150, 300, 450)))
    result = mesh.run(url=mock_server.url, input_file=str(trace), fixed_schedule=True)
    assert_accounted(result, 4)
    starts = sorted(r["metadata"]["request_start_ns"] for r in result.records)
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(starts)]
    assert all(gap >= 150 * 0.95 for gap in gaps_ms), gaps_ms
    assert result["output_sequence_length"].avg == 3


def test_single_turn_files_drive_the_prompts(mesh: Mesh, mock_server: MockServerProcess,
                                             tmp_path: Path) -> None:
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"text": "one two three", "output_length": 2}\n'
                    '{"text": "four five", "output_length": 5}\n')
    result = mesh.run(url=mock_server.url, input_file=str(data), concurrency=1, request_count=4)
    assert_accounted(result, 4)
    assert sorted(r["metrics"]["output_sequence_length"]["value"] for r in result.records) == [
        2, 2, 5, 5]


def test_goodput_through_the_whole_pipeline(mesh: Mesh, mock_server: MockServerProcess) -> None:
    result = mesh.run(url=mock_server.url, streaming=True, concurrency=2, request_count=10,
                      goodput={"time_to_first_token": 10_000, "request_latency": 0.000001})
    assert result["good_request_count"].avg == 0
    assert result["good_request_fraction"].avg == 0


def test_progress_reports_arrive_while_a_run_goes_on(
    mesh: Mesh, mock_server: MockServerProcess
) -> None:
    seen: list[tuple[int, float]] = []
    result = mesh.run(url=mock_server.url, request_rate=12, arrival_pattern="constant",
                      request_count=30, progress=lambda p: seen.append((p.records, p.elapsed_s)))
    assert_accounted(result, 30)
    assert len(seen) >= 1
    assert [r for r, _ in seen] == sorted(r for r, _ in seen)
    assert all(0 <= r <= 30 for r, _ in seen)


def test_a_slow_record_processor_slows_the_workers_and_loses_no_record(
    mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DELAY_ENV, "2")  # each record derived 2 ms late
    # An HWM of one batch: the worker's sends wait on the processor most of the run.
    with plugins.registered(PluginType.SERVICE, "record_processor", SlowRecordProcessor), \
            Mesh(workers=1, record_hwm=1) as mesh:
        result = mesh.run(url=mock_server.url, streaming=True, concurrency=8,
                          request_count=600)
    assert_accounted(result, 600)
    assert result.request_count == 600 and result.error_count == 0
