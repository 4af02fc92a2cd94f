"""A record processor's ``max_lag_ms`` (the longest a record waited from its request's end
to its parsing) when the workers' clocks are not the driver host's: a local mesh with
``clock_sync`` and the tests-only skew, one worker's clock ahead and one behind. Every
record processor runs on the driver host, whose clock is the timing manager's, so the
stamps moved onto that clock compare with the processor's own. Real processes, sockets and
a mock server."""

from __future__ import annotations

import time

import pytest

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.services.clock import CLOCK_SKEW_ENV

S = 1_000_000_000
# Far beyond any real lag of this run, and small enough that a clock behind by it still
# reads positive stamps (the machine has been up for longer than the suite has run).
SKEW_NS = 100 * S


def test_a_skewed_workers_records_lag_by_their_real_wait(
        mock_server: MockServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CLOCK_SKEW_ENV, f"{SKEW_NS},{-SKEW_NS}")  # worker_0 ahead, 1 behind
    with Mesh(workers=2, record_processors=1, clock_sync=True, command_timeout=15) as mesh:
        before = time.perf_counter_ns()
        result = mesh.run(url=mock_server.url, streaming=True, concurrency=4,
                          request_count=100)
        after = time.perf_counter_ns()
    assert result.invariant["ok"] and result.request_count == 100
    assert sorted(result.clock_offsets) == ["worker_0", "worker_1"]
    backlog = result.record_backlog["record_processor_0"]
    # Every request ended and was parsed within the run, on this host's clock; the stamps'
    # move onto it is off by at most the offset estimates' uncertainty.
    slack_ms = max(c["uncertainty_ns"] for c in result.clock_offsets.values()) / 1e6
    assert 0 < backlog["max_lag_ms"] <= (after - before) / 1e6 + slack_ms, backlog
