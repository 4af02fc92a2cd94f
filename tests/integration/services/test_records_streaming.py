"""The records manager streams a run: each record's export line is appended to the table
file as its batch arrives, the values file keeps its shape, and no table is written for a
run that keeps none. The raw results dict is caught on the host before the table file is
moved away, so the file the records manager wrote is what is checked."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from aiperf.common.config import UserConfig
from aiperf.mesh import Mesh
from aiperf.metrics.definitions import BY_TAG
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult
from aiperf.services.records_manager import BatchSpool, RecordsManager


@pytest.fixture
def raw_results(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """Each run's results dict as the records manager sent it, with a copy of its table
    file (``records_copy``) taken before the host adopts the original."""
    caught: list[dict[str, Any]] = []
    original = ProfileResult.from_dict.__func__  # type: ignore[attr-defined]

    def catch(cls: type[ProfileResult], data: dict[str, Any], config: Any = None
              ) -> ProfileResult:
        seen = dict(data)
        if data.get("records_path"):
            copy = tmp_path / f"copy-{len(caught)}.jsonl"
            shutil.copyfile(data["records_path"], copy)
            seen["records_copy"] = copy
        caught.append(seen)
        return original(cls, data, config)  # type: ignore[no-any-return]

    monkeypatch.setattr(ProfileResult, "from_dict", classmethod(catch))
    yield caught


def test_the_table_file_is_json_lines_one_per_record_in_the_export_shape(
        mesh: Mesh, mock_server: MockServerProcess, raw_results: list[dict[str, Any]]
) -> None:
    result = mesh.run(url=mock_server.url, streaming=True, concurrency=8, request_count=300,
                      warmup_request_count=5)
    [data] = raw_results
    assert data["records_path"].endswith(f"records-{data['run_id']}.jsonl")
    lines = data["records_copy"].read_bytes().splitlines()
    assert len(lines) == data["records_count"] == 305
    rows = [msgspec.json.decode(line) for line in lines]
    assert sorted(r["metadata"]["credit_id"] for r in rows) == list(range(305))
    assert sum(r["metadata"]["benchmark_phase"] == "warmup" for r in rows) == 5
    for row in rows:
        assert set(row) == {"metadata", "metrics"}  # no errors against the mock
        assert row["metadata"]["request_end_ns"] > row["metadata"]["request_start_ns"]
        for tag, metric in row["metrics"].items():
            assert metric["unit"] == BY_TAG[tag].unit
    # The table the host reads is the file's, and its values agree with the statistics.
    assert len(result.records) == 305
    assert result.request_count == 300
    latencies = sorted(r["metrics"]["request_latency"]["value"] for r in rows
                       if r["metadata"]["benchmark_phase"] == "profiling")
    assert latencies == sorted(result["request_latency"].values)
    assert data["record_backlog"]["records"] >= 1  # at least the batch it waited for


def test_a_run_that_keeps_no_table_writes_none(
        mesh: Mesh, mock_server: MockServerProcess, raw_results: list[dict[str, Any]]
) -> None:
    result = mesh.run(url=mock_server.url, streaming=True, concurrency=4, request_count=50,
                      export_records=False)
    [data] = raw_results
    assert data["records_path"] is None and data["records_count"] == 0
    assert not list(Path(mesh.service_config.run_dir).glob("records-*.jsonl"))
    assert result.request_count == 50 and len(result["request_latency"].values) == 50


def test_sketch_mode_sends_sketches_and_no_per_request_values(
        mesh: Mesh, mock_server: MockServerProcess, raw_results: list[dict[str, Any]]
) -> None:
    result = mesh.run(url=mock_server.url, streaming=True, concurrency=8, request_count=400,
                      sketch=True)
    [data] = raw_results
    assert data["records_path"] is None  # no table unless asked for in sketch mode
    assert result.request_count == 400
    latency = result["request_latency"]
    assert latency.sketch is not None and latency.sketch.count == 400
    assert len(latency.values) == 0
    assert latency.stats["min"] <= latency.p50 <= latency.stats["max"]


class SlowRecordsManager(RecordsManager):
    """A records manager that takes ``SLOW_BATCH_MS`` per batch as it arrives (its event
    loop blocked, as a slow disk or a CPU-bound aggregation would): it falls behind the
    record processor. Exact mode spools batches during the run (aggregating after it),
    sketch mode aggregates them live: whichever takes the batch is slowed."""

    def _start_aggregating(self, config: UserConfig, run_id: str, *dataset: Any) -> None:
        super()._start_aggregating(config, run_id, *dataset)
        taker = self._spool if self._spool is not None else self._aggregator
        assert taker is not None
        take = taker.append if isinstance(taker, BatchSpool) else taker.add

        def slow(batch: Any) -> None:
            time.sleep(SLOW_BATCH_MS / 1000)
            take(batch)

        if isinstance(taker, BatchSpool):
            taker.append = slow  # type: ignore[method-assign]
        else:
            taker.add = slow  # type: ignore[method-assign]


SLOW_BATCH_MS = 50


def test_a_records_manager_behind_holds_the_run_back_and_says_how_far(
        mock_server: MockServerProcess, raw_results: list[dict[str, Any]]) -> None:
    with plugins.registered(PluginType.SERVICE, "records_manager", SlowRecordsManager), \
            Mesh(workers=1, record_hwm=2) as slow_mesh:
        result = slow_mesh.run(url=mock_server.url, streaming=True, concurrency=16,
                               request_count=600)
    [data] = raw_results
    assert result.invariant["ok"] and result.request_count == 600
    backlog = data["record_backlog"]
    # The queue filled (the processor waited on it: the flag), and stayed bounded: the
    # two high-water marks plus what the kernel's socket buffer holds, never the run.
    assert backlog["batches"] >= 2
    assert backlog["records"] < 600 and backlog["bytes"] < 1 << 20, backlog
    assert any("records manager fell behind" in w for w in result.warnings)


def test_progress_reports_carry_the_current_slices_p99(
        mesh: Mesh, mock_server: MockServerProcess) -> None:
    seen: list[Any] = []
    result = mesh.run(url=mock_server.url, streaming=True, request_rate=40,
                      arrival_pattern="constant", request_count=120, slice_duration=1.0,
                      progress=seen.append)
    with_slice = [p for p in seen if p.slice_p99_ms]
    assert with_slice, seen
    latency = result["request_latency"]
    for progress in with_slice:
        assert progress.slice_end_s - progress.slice_start_s == 1.0
        assert 0 < progress.slice_requests <= 120
        # Each slice's p99 is one of this run's latencies' range, TTFT below it.
        p99 = progress.slice_p99_ms
        assert latency.min <= p99["request_latency"] <= latency.max
        assert 0 < p99["time_to_first_token"] <= p99["request_latency"]


def test_a_sketch_mode_run_keeps_its_timeline_in_bins_for_throughput_and_validity(
        mesh: Mesh, mock_server: MockServerProcess) -> None:
    import numpy as np

    from aiperf.windows import whole_run

    result = mesh.run(url=mock_server.url, streaming=True, request_rate=150,
                      arrival_pattern="constant", request_count=300, sketch=True)
    assert len(result.timeline) == 0 and result["request_latency"].sketch is not None
    bins = result._end_bins
    assert bins is not None and sum(bins["requests"]) == result.request_count == 300
    assert bins["n_starts"] == sum(bins["starts"]) == 300
    windows = whole_run(result).throughput_windows("request_throughput")
    assert np.isfinite(windows).all() and windows.sum() > 0
    signals = {s.name: s for s in result.validity.signals}
    for name in ("schedule_lag_p99", "achieved_rate"):
        assert signals[name].measured is not None, signals[name]
    # 300 starts 1/150 s apart: 299 gaps over their span.
    assert signals["achieved_rate"].measured == pytest.approx(150, rel=0.05)
