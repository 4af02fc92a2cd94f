"""Windows, steady state and time slices on real runs: a mesh of real processes against the
mock server in its own process (20 ms to the first token, 10 % of requests failed)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aiperf.exporters.base import export_files
from aiperf.mesh import Mesh
from aiperf.metrics.parity import SWEEP_TAGS
from aiperf.mock_server import MockServerConfig, MockServerProcess
from aiperf.results import ProfileResult
from aiperf.windows import (
    RAMP_SLACK_S,
    _closed_loop_ramp,
    sketch_steady_state,
    steady_state,
    whole_run,
    windows,
)

SENT = 120


@pytest.fixture(scope="module")
def slow_server() -> Iterator[MockServerProcess]:
    with MockServerProcess(MockServerConfig(ttft_ms=20, itl_ms=2, tokens=4,
                                            error_rate=0.1)) as server:
        yield server


@pytest.fixture(scope="module")
def sliced(mesh: Mesh, slow_server: MockServerProcess) -> ProfileResult:
    # 4 slots of ~26 ms requests: about 0.8 s, so several 0.2 s slices.
    return mesh.run(url=slow_server.url, streaming=True, concurrency=4, request_count=SENT,
                    osl=4, slice_duration="200ms")


def test_slices_count_every_request_of_the_run_once(sliced: ProfileResult,
                                                    tmp_path: Path) -> None:
    assert sliced.invariant["ok"] and sliced.request_count + sliced.error_count == SENT
    assert 0 < sliced.error_count < SENT  # the server failed some: they are counted too
    rows = sliced.slices
    assert len(rows) >= 3
    assert sum(r["request_count"]["avg"] for r in rows) == sliced.request_count
    assert sum(r.get("error_request_count", {}).get("avg", 0) for r in rows) == \
        sliced.error_count
    starts = [r["start_ns"] for r in rows]
    assert starts == sorted(starts) and all(r["end_ns"] > r["start_ns"] for r in rows)
    assert sum(r["time_to_first_token"]["count"] for r in rows) == \
        sliced["time_to_first_token"].count
    export_files(sliced, tmp_path)
    document = json.loads((tmp_path / "profile_export_aiperf_timeslices.json").read_text())
    assert [r["start_ns"] for r in document["timeslices"]] == starts
    with (tmp_path / "profile_export_aiperf_timeslices.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert {r["Timeslice"] for r in table} == {str(i) for i in range(len(rows))}


def test_the_whole_run_sample_reproduces_the_engines_statistics(sliced: ProfileResult) -> None:
    assert len(sliced.timeline) == SENT
    recomputed = whole_run(sliced).metrics()
    for tag, metric in sliced.metrics.items():
        if tag in SWEEP_TAGS:  # the whole timeline's, computed once by the result
            assert tag not in recomputed
            continue
        assert recomputed[tag] == {"unit": metric.unit, **metric.stats}, tag
    for metric in sliced.metrics.values():
        index = np.asarray(metric.record_index)
        assert index.size == len(metric.values)
        assert index.size == 0 or (index.min() >= 0 and index.max() < SENT)


def test_steady_state_and_windows_on_a_real_closed_loop(sliced: ProfileResult) -> None:
    config = sliced.config
    assert config is not None
    steady = steady_state(sliced, config)
    duration = sliced.metric("benchmark_duration")
    # Ramp-up: the first four requests (~26 ms each); ramp-down: the last few requests.
    assert 0 < steady.start_s < 0.25 * duration
    assert 0.5 * duration < steady.end_s <= duration + 1e-9
    assert 0 < steady.n_ok + steady.n_err < SENT
    assert steady.label.startswith("steady state ")
    found = windows(sliced, 0.2)
    assert sum(w.n_ok + w.n_err for w in found) == SENT
    assert [w.n_ok for w in found if w.n_ok + w.n_err] == \
        [r["request_count"]["avg"] for r in sliced.slices]


def test_the_steady_state_of_a_concurrency_ramp_starts_after_it(
    mesh: Mesh, slow_server: MockServerProcess,
) -> None:
    """Slot 1 sends many ~26 ms requests before slot 4 starts at 0.6 s: the first four
    requests (the rule without a ramp) all end well inside the ramp."""
    result = mesh.run(url=slow_server.url, streaming=True, concurrency=4, request_count=160,
                      osl=4, concurrency_ramp_duration=0.6)
    config = result.config
    assert config is not None
    steady = steady_state(result, config)
    assert steady.start_s >= 0.6
    start_s = (result.timeline.start_ns - result.timeline.start_ns.min()) / 1e9
    ramped = int((start_s < 0.6).sum())
    assert ramped > 4  # slot 1 alone sent more than four requests in the ramp
    assert steady.n_ok + steady.n_err <= 160 - ramped


def test_a_concurrency_ramp_that_outlasts_the_warm_up_stays_out_of_steady_state(
    mesh: Mesh, slow_server: MockServerProcess,
) -> None:
    """The ramp runs once a run, from the warm-up's start: four ~26 ms warm-up requests of
    slot 1 take about 0.1 s, so slots 2-4 (0.2, 0.4, 0.6 s into the ramp) start in the
    profiling phase. Steady state starts no earlier than the last slot's first request
    (the first time four were in flight), whatever the warm-up took."""
    result = mesh.run(url=slow_server.url, streaming=True, concurrency=4, request_count=160,
                      osl=4, concurrency_ramp_duration=0.6, warmup_request_count=4)
    config = result.config
    assert config is not None and result.invariant["ok"]
    start_s, end_s = _seconds_since_first(result)
    # In flight when each request started (itself included): a slot's requests follow
    # one another, so four are in flight only once the last slot has started.
    in_flight = ((start_s[None, :] <= start_s[:, None])
                 & (start_s[:, None] < end_s[None, :])).sum(axis=1)
    assert (in_flight >= 4).any()
    all_slots_s = float(start_s[in_flight >= 4].min())
    steady = steady_state(result, config)
    assert steady.start_s >= all_slots_s
    assert start_s[steady.members].min() >= all_slots_s


@pytest.mark.parametrize("sketch", [False, True], ids=["exact", "sketch"])
def test_a_ramp_done_in_the_warm_up_leaves_a_short_profiling_phase_steady(
    mesh: Mesh, slow_server: MockServerProcess, sketch: bool,
) -> None:
    """A 0.6 s ramp inside a warm-up that lasts longer (180-odd successful ~26 ms requests
    at most four at a time: over 1.1 s), then a profiling phase shorter than the ramp
    (60 requests, about 0.4 s). Bounded from profiling's start, the ramp left no steady
    state; from the warm-up's start (which the result now carries) it is over."""
    result = mesh.run(url=slow_server.url, streaming=True, concurrency=4, request_count=60,
                      osl=4, concurrency_ramp_duration=0.6, warmup_request_count=200,
                      sketch=sketch, slice_duration="50ms")
    config = result.config
    assert config is not None and result.invariant["ok"]
    if sketch:
        span = result._sketch_windows["steady"]  # type: ignore[index]
        assert span["warmup_s"] <= -(0.6 + RAMP_SLACK_S)
        evidence, why = sketch_steady_state(result, config)
        assert evidence is not None and evidence.n_ok > 0, why
        return
    assert result._warmup_start_ns is not None
    start_s, end_s = _seconds_since_first(result)
    warmup_s = (result._warmup_start_ns - result.timeline.start_ns.min()) / 1e9
    assert warmup_s <= -(0.6 + RAMP_SLACK_S)
    steady = steady_state(result, config)
    assert steady.n_ok > 0, steady.label
    # No ramp left to cut: ramp-up is the rule without one (four requests' first end).
    ramp = _closed_loop_ramp(start_s, end_s, 4)
    assert ramp is not None and steady.start_s == ramp[0]


def _seconds_since_first(result: ProfileResult) -> tuple[np.ndarray, np.ndarray]:
    timeline = result.timeline
    origin = timeline.start_ns.min()
    return (timeline.start_ns - origin) / 1e9, (timeline.end_ns - origin) / 1e9


def test_the_cli_writes_time_slices_with_slice_duration(slow_server: MockServerProcess,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "art"
    proc = subprocess.run(
        [sys.executable, "-m", "aiperf", "profile", "-u", slow_server.url, "--streaming",
         "--concurrency", "2", "--request-count", "20", "--osl", "4",
         "--slice-duration", "100ms", "--output-artifact-dir", str(out)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    document = json.loads((out / "profile_export_aiperf_timeslices.json").read_text())
    summary = json.loads((out / "profile_export_aiperf.json").read_text())
    assert document["input_config"]["slice_duration"] == 0.1
    counted = sum(r["request_count"]["avg"] + r.get("error_request_count", {}).get("avg", 0)
                  for r in document["timeslices"])
    assert counted == 20 == summary["request_count"]["avg"] + \
        summary["error_request_count"]["avg"]
    assert (out / "profile_export_aiperf_timeslices.csv").exists()
