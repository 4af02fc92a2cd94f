"""ProfileResult as the host sees it: the per-request table read lazily from the
records manager's file, percentiles from compact value arrays."""

from __future__ import annotations

from array import array
from pathlib import Path

import msgspec
import pytest

from aiperf.results import ProfileResult


def row(i: int, latency: float, phase: str = "profiling", error: bool = False) -> dict:
    out = {"metadata": {"credit_id": i, "benchmark_phase": phase, "was_cancelled": False},
           "metrics": {"request_latency": {"value": latency, "unit": "ms"}}}
    if error:
        out["error"] = {"code": 500, "type": "X", "message": "boom"}
    return out


ROWS = [row(0, 99.0, phase="warmup"), row(1, 10.0), row(2, 20.0), row(3, 30.0),
        row(4, 5.0, error=True)]


def write_table(path: Path, rows: list[dict]) -> None:
    """The records manager's table: JSON Lines, one record a line."""
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))


def test_a_result_reads_its_files_removes_them_and_computes_any_percentile(
        tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    write_table(path, ROWS)
    # The records manager's values: profiling requests that neither failed nor were warmup.
    values_path = tmp_path / "records.values"
    values_path.write_bytes(msgspec.msgpack.encode(
        {"request_latency": array("d", [10.0, 20.0, 30.0]).tobytes()}))
    result = ProfileResult.from_dict({
        "run_id": "r", "records_path": str(path), "values_path": str(values_path),
        "metrics": {"request_latency": {"unit": "ms", "avg": 20.0, "p50": 20.0},
                    "adj_request_latency": {"unit": "ms", "avg": None},
                    "error_request_count": {"unit": "requests", "avg": 1}}})
    assert not path.exists() and not values_path.exists() and len(result.records) == 5
    latency = result["request_latency"]
    assert list(latency.values) == [10.0, 20.0, 30.0]  # profiling, not failed, not warmup
    assert latency.stat("p75") == pytest.approx(25.0)
    assert result["adj_request_latency"].failures == 1
    assert result["adj_request_latency"].stat("p50") == 30.0  # nearest, failures as +inf


def test_a_result_repr_is_one_line_of_counts_and_metric_names() -> None:
    result = ProfileResult.from_dict({
        "run_id": "r1", "was_cancelled": True, "invariant": {"ok": False},
        "metrics": {"request_latency": {"unit": "ms", "avg": 20.0, "p50": 123.456},
                    "request_count": {"unit": "requests", "avg": 3},
                    "error_request_count": {"unit": "requests", "avg": 1}}})
    assert repr(result) == (
        "<ProfileResult 'r1': 3 requests, 1 errors, cancelled, credit invariant broken; "
        "metrics: request_latency, request_count, error_request_count>")
    assert "123.456" not in repr(result)


def test_a_result_reads_values_and_timeline_from_the_records_managers_file(
        tmp_path: Path) -> None:
    values_path = tmp_path / "records.values"
    values_path.write_bytes(msgspec.msgpack.encode({
        "values": {"request_latency": array("d", [10.0, 30.0]).tobytes(),
                   "input_sequence_length": array("d", [7.0, 9.0]).tobytes()},
        "timeline": {"start_ns": array("q", [0, 5, 20]).tobytes(),
                     "end_ns": array("q", [10, 6, 50]).tobytes(),
                     "pattern": array("H", [0, 1, 0]).tobytes(),
                     "patterns": [[True, ["request_latency", "input_sequence_length"]],
                                  [False, []]],
                     "list_lengths": {}}}))
    result = ProfileResult.from_dict({
        "values_path": str(values_path),
        "metrics": {"request_latency": {"unit": "ms", "avg": 20.0},
                    "adj_request_latency": {"unit": "ms"},
                    "error_request_count": {"unit": "requests", "avg": 1}}})
    assert not values_path.exists()
    assert result.timeline.ok.tolist() == [True, False, True]
    assert result.timeline.isl.tolist() == [7, 0, 9]
    assert list(result["request_latency"].record_index) == [0, 2]
    assert list(result["adj_request_latency"].record_index) == [0, 2]
    assert result.slices == []  # no config, no slice_duration


def test_the_values_file_is_mapped_not_copied_and_a_list_index_is_built_on_use(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mmap

    import numpy as np

    import aiperf.results

    monkeypatch.setattr(aiperf.results, "MAP_BYTES", 1000)  # this small file is mapped

    values_path = tmp_path / "records.values"
    latencies = array("d", [float(i) for i in range(5000)])
    values_path.write_bytes(msgspec.msgpack.encode({
        "values": {"request_latency": latencies.tobytes(),
                   "inter_chunk_latency": array("d", [1.0, 2.0, 3.0]).tobytes()},
        "timeline": {"start_ns": array("q", range(5000)).tobytes(),
                     "end_ns": array("q", range(1, 5001)).tobytes(),
                     "pattern": array("H", [0] * 5000).tobytes(),
                     "patterns": [[True, ["request_latency", "inter_chunk_latency"]]],
                     "list_lengths": {"inter_chunk_latency": [
                         2, array("H", [2, 1] + [0] * 4998).tobytes()]}},
        "worker_load": {"w": {"tick_ns": 1}}, "sketches": None}))
    result = ProfileResult.from_dict({
        "values_path": str(values_path),
        "metrics": {"request_latency": {"unit": "ms", "avg": 2499.5},
                    "inter_chunk_latency": {"unit": "ms", "avg": 2.0}}})
    assert not values_path.exists()
    values = result["request_latency"].values
    assert isinstance(values, np.ndarray) and not values.flags.owndata
    # A view of a read-only mapping of the (removed) file, not a copy of its bytes.
    assert isinstance(values.base, memoryview) and isinstance(values.base.obj, mmap.mmap)
    assert values.tobytes() == latencies.tobytes() and not values.flags.writeable
    assert result.worker_load == {"w": {"tick_ns": 1}}
    index = result["inter_chunk_latency"].record_index
    assert len(index) == 3 and list(index) == [0, 0, 1]
    assert np.asarray(index, dtype=np.int32).tolist() == [0, 0, 1] and index[2] == 1
