"""Workers whose clocks differ from the timing manager's, on one machine: a local mesh with
``clock_sync`` and the tests-only skew (``AIPERF_TEST_CLOCK_SKEW_NS``), which makes a worker
stamp and schedule as if its monotonic clock were seconds away from everyone else's.

On this one host the reference clock (the timing manager's perf_counter_ns) is also this
test process's, so every stamp of a result can be checked against the test's own readings.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.results import ProfileResult
from aiperf.services.clock import CLOCK_ROUNDS, CLOCK_SKEW_ENV, skew_for_tests

S = 1_000_000_000
SKEW_NS = 3 * S
WORKERS = 2
# A scheduled (request_rate) run of about 1.5 s: credits carry absolute send times.
PROFILE: dict[str, Any] = {"request_rate": 40.0, "arrival_pattern": "constant",
                           "request_count": 60, "streaming": True, "osl": 8, "isl": 16}
# A closed-loop run for a duration: leases carry an absolute deadline.
DURATION_S = 1.0
TIMED: dict[str, Any] = {"concurrency": 4, "benchmark_duration": DURATION_S,
                         "streaming": True, "osl": 8, "isl": 16}


@dataclass
class Run:
    result: ProfileResult
    before_ns: int  # this process's perf_counter_ns: the reference clock on this host
    after_ns: int

    @property
    def elapsed_ns(self) -> int:
        return self.after_ns - self.before_ns


def profile(mesh: Mesh, url: str, settings: dict[str, Any] = PROFILE) -> Run:
    before = time.perf_counter_ns()
    result = mesh.run(url=url, **settings)
    after = time.perf_counter_ns()
    assert result.invariant["ok"], result.invariant
    if "request_count" in settings:
        assert result.error_count == 0 and result.request_count == settings["request_count"]
    return Run(result, before, after)


@pytest.fixture(scope="module")
def server() -> Iterator[MockServerProcess]:
    # A latency of its own, so that request latency is more than the client's overhead.
    with MockServerProcess(tokens=8, ttft_ms=20, itl_ms=2) as running:
        yield running


@pytest.fixture(scope="module")
def unskewed_runs(server: MockServerProcess) -> dict[str, Run]:
    """The same profiles on a plain local mesh: one clock, no handshake."""
    with Mesh(workers=WORKERS, command_timeout=15) as mesh:
        return {"rate": profile(mesh, server.url), "timed": profile(mesh, server.url, TIMED)}


@pytest.fixture(scope="module")
def unskewed(unskewed_runs: dict[str, Run]) -> Run:
    return unskewed_runs["rate"]


def check_offsets(result: ProfileResult, skews: str) -> None:
    """(a) Each worker found its clock's offset: -skew, within the uncertainty it states.
    (d) The result reports it, per worker, in the export too."""
    offsets = result.clock_offsets
    assert sorted(offsets) == [f"worker_{i}" for i in range(WORKERS)]
    for worker, clock in offsets.items():
        skew = skew_for_tests(skews, int(worker.rsplit("_", 1)[1]))
        assert abs(clock["offset_ns"] + skew) <= clock["uncertainty_ns"], (worker, clock)
        assert clock["uncertainty_ns"] == (clock["round_trip_ns"] + 1) // 2
        assert clock["samples"] == CLOCK_ROUNDS
        assert clock["host"] == socket.gethostname()
    assert result.to_dict()["clock_offsets"] == offsets


def test_a_local_mesh_reports_no_clock_offsets(unskewed: Run) -> None:
    assert unskewed.result.clock_offsets == {}
    assert "clock_offsets" not in unskewed.result.to_dict()


@pytest.mark.parametrize("skews", [str(SKEW_NS), str(-SKEW_NS), f"{SKEW_NS},{-SKEW_NS}"],
                         ids=["plus-3s", "minus-3s", "one-each-way"])
def test_skewed_workers_run_on_the_reference_clock(
    server: MockServerProcess, unskewed: Run, monkeypatch: pytest.MonkeyPatch, skews: str
) -> None:
    monkeypatch.setenv(CLOCK_SKEW_ENV, skews)  # the mesh inherits it: every worker reads it
    with Mesh(workers=WORKERS, command_timeout=15, clock_sync=True) as mesh:
        run = profile(mesh, server.url)
    result = run.result
    check_offsets(result, skews)
    offsets = result.clock_offsets

    # (b) Requests went out on the timing manager's schedule. Every stamp of the result is
    # on the reference clock, which here is this process's: a worker that slept on its own
    # clock would have sent 3 s late (then the run takes 3 s longer) or at once, 3 s
    # before its send time (then its credit stamps precede this run).
    slack = max(clock["uncertainty_ns"] for clock in offsets.values())
    for record in result.records:
        meta = record["metadata"]
        issued, start, end = (meta["credit_issued_ns"], meta["request_start_ns"],
                              meta["request_end_ns"])
        assert run.before_ns <= issued <= start + slack, meta
        assert start <= end <= run.after_ns + slack, meta
    assert run.elapsed_ns < unskewed.elapsed_ns + SKEW_NS // 2
    assert result.metric("credit_to_start_latency.max") < SKEW_NS / 2 / 1e6  # ms

    # (c) What is compared across workers (the benchmark duration: the first start to the
    # last end, of any worker) and what one worker measures (latency) match the run
    # without skew: two workers 6 s apart would otherwise stretch the duration by 6 s.
    duration = result.metric("benchmark_duration")
    expected = unskewed.result.metric("benchmark_duration")
    assert abs(duration - expected) < 0.25 * expected, (duration, expected)
    latency = result.metric("request_latency.p50")
    expected_latency = unskewed.result.metric("request_latency.p50")
    assert abs(latency - expected_latency) < 0.5 * expected_latency, (latency, expected_latency)
    # The workers' load probes were moved onto the reference clock too: validity measured
    # them within the run rather than finding no tick inside it.
    lag = next(s for s in result.validity.signals if s.name == "event_loop_lag_p99")
    assert lag.measured is not None, lag


def test_skewed_workers_stop_at_the_timing_managers_deadline(
    server: MockServerProcess, unskewed_runs: dict[str, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lease's deadline is on the timing manager's clock: read on a worker's own clock it
    would have expired 3 s ago on one worker (no request) and 3 s from now on the other
    (requests into the grace period, cancelled)."""
    skews = f"{SKEW_NS},{-SKEW_NS}"
    monkeypatch.setenv(CLOCK_SKEW_ENV, skews)
    with Mesh(workers=WORKERS, command_timeout=15, clock_sync=True) as mesh:
        # The second run re-estimates at its configure and reports that estimate.
        profile(mesh, server.url, TIMED)
        run = profile(mesh, server.url, TIMED)
    result = run.result
    check_offsets(result, skews)
    expected = unskewed_runs["timed"].result
    assert result.error_count == 0, result.error_lines()
    by_worker = {record["metadata"]["worker_id"] for record in result.records}
    assert by_worker == {f"worker_{i}" for i in range(WORKERS)}
    starts = [record["metadata"]["request_start_ns"] for record in result.records]
    slack = max(clock["uncertainty_ns"] for clock in result.clock_offsets.values())
    assert max(starts) - min(starts) <= DURATION_S * S + 2 * slack
    duration = result.metric("benchmark_duration")
    assert abs(duration - expected.metric("benchmark_duration")) < 0.25 * DURATION_S
