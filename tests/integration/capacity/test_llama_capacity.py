"""The search against llama.cpp's llama-server with 4 slots (``--parallel 4``): a request
beyond the fourth waits for a slot, which adds a whole request's time to its TTFT, so the
capacity under a TTFT objective set between "served at once" and "waited for a slot" is
about the slot count.

The threshold comes from a calibration run at concurrency 4 on this machine: its TTFT p90
plus a quarter of its request latency (at 5 clients a request waits about that long in a
staggered queue, and in waves one in five waits a whole request). Marked ``llama``,
skipped as tests/integration/test_llama_server.py is; skipped too when the machine is so
loaded that one request takes over 2 s (the search would not fit its minute).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiperf.capacity import Budget, run_search
from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import ProbeRunner
from aiperf.mesh import Mesh
from pytest_aiperf.kit.servers import LlamaServer, why_unavailable
from pytest_aiperf.policy import VerdictPolicy

pytestmark = [
    pytest.mark.llama,
    pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable())),
]
SLOTS = 4
PROFILE = {"model": "smollm2", "streaming": True, "osl": 16, "isl": 16,
           "extra_inputs": {"ignore_eos": True}, "request_timeout_seconds": 60}
MAX_LATENCY_S = 2.0


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with LlamaServer(parallel=SLOTS, threads=2) as server:
        yield server


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=1, command_timeout=60) as running:
        yield running


def test_the_search_finds_a_capacity_consistent_with_the_slots(mesh: Mesh,
                                                               llama: LlamaServer) -> None:
    # one wave, each request cut at 3x the limit: a loaded machine is told in seconds
    calibration = mesh.run(url=llama.url, concurrency=SLOTS, request_count=SLOTS,
                           **{**PROFILE, "request_timeout_seconds": 3 * MAX_LATENCY_S})
    latency_ms = (calibration["request_latency"].p50 if calibration.request_count
                  else float("inf"))
    if calibration.error_count or latency_ms > MAX_LATENCY_S * 1000:
        pytest.skip(f"a request takes {latency_ms / 1000:.1f} s at concurrency {SLOTS} on "
                    f"this machine now (limit {MAX_LATENCY_S:g} s; {calibration.error_count} "
                    f"of {SLOTS} cut at {3 * MAX_LATENCY_S:g} s): too loaded to search")
    threshold = calibration["time_to_first_token"].p90 + latency_ms / SLOTS
    objective = parse_slo(f"time_to_first_token.p90<{threshold:.0f}ms")
    runner = ProbeRunner(mesh.run, {"url": llama.url, "request_count": 30, **PROFILE},
                         [objective], over="concurrency",
                         policy=VerdictPolicy(inconclusive="pass", validity="off"))
    result = run_search(runner, over="concurrency", low=2, high=16, tolerance=0.1,
                        budget=Budget(max_seconds=50, max_requests=300))
    described = "\n".join([f"threshold {threshold:.0f} ms", *result.table(),
                           result.headline()])
    assert result.requests <= 300, described
    assert result.max_passing is not None, described
    # never more than the slots (a fifth client waits), and not far below them
    assert SLOTS - 1 <= result.max_passing <= SLOTS + 1, described
    if result.converged:
        assert result.min_failing is not None and result.min_failing <= 2 * SLOTS, described
