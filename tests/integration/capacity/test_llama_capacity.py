"""The search against llama.cpp's llama-server with 4 slots (``--parallel 4``): a request
beyond the fourth waits for a slot, which adds a whole request's time to its TTFT, so the
capacity under a TTFT objective set between "served at once" and "waited for a slot" is
about the slot count.

The threshold comes from a calibration run at concurrency 4 on this machine: its TTFT p90
plus a quarter of its request latency. Below the slots nothing waits; at 8 clients the
requests beyond the slots wait for one to free, about half a request on average once the
waves stagger (measured here: TTFT p75 at 8 clients = TTFT p90 at 4 + 0.5 latency), so the
p75 breaks before 8. (Half a latency, as first written, put 8 right on the threshold:
INCONCLUSIVE, and a lucky PASS there sent the search past 8.) Marked ``llama``, skipped (or
failed under CI) as tests/integration/test_llama_server.py is; skipped too when the machine
is so loaded that a request takes over 5 s at 4 clients (the search would not fit its
minute; measured here: 1.3-2 s for one request alone while five other sessions ran).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiperf.capacity import Budget, run_search
from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import ProbeRunner
from aiperf.mesh import Mesh
from pytest_aiperf.kit.servers import LlamaServer
from pytest_aiperf.policy import VerdictPolicy
from tests.harness.llama_server import llama_server_fixture

pytestmark = pytest.mark.llama
SLOTS = 4
PROFILE = {"model": "smollm2", "streaming": True, "osl": 8, "isl": 16,
           "extra_inputs": {"ignore_eos": True}, "request_timeout_seconds": 60}
MAX_LATENCY_S = 5.0

llama = llama_server_fixture(parallel=SLOTS)


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=1, command_timeout=60) as running:
        yield running


def test_the_search_finds_a_capacity_consistent_with_the_slots(mesh: Mesh,
                                                               llama: LlamaServer) -> None:
    mesh.run(url=llama.url, concurrency=1, request_count=1, **PROFILE)  # warm the model
    # two waves, each request cut at 2x the limit: a loaded machine is told in seconds
    calibration = mesh.run(url=llama.url, concurrency=SLOTS, request_count=2 * SLOTS,
                           **{**PROFILE, "request_timeout_seconds": 2 * MAX_LATENCY_S})
    latency_ms = (calibration["request_latency"].p50 if calibration.request_count
                  else float("inf"))
    if calibration.error_count or latency_ms > MAX_LATENCY_S * 1000:
        pytest.skip(f"a request takes {latency_ms / 1000:.1f} s at concurrency {SLOTS} on "
                    f"this machine now (limit {MAX_LATENCY_S:g} s; {calibration.error_count} "
                    f"of {2 * SLOTS} cut at {2 * MAX_LATENCY_S:g} s): too loaded to search")
    threshold = calibration["time_to_first_token"].p90 + latency_ms / 4
    print(f"calibration: latency p50 {latency_ms:.0f} ms, threshold {threshold:.0f} ms")
    objective = parse_slo(f"time_to_first_token.p75<{threshold:.0f}ms")
    # the default request count: 10 per client (a probe at c must queue c requests at once)
    runner = ProbeRunner(mesh.run, {"url": llama.url, **PROFILE},
                         [objective], over="concurrency",
                         policy=VerdictPolicy(inconclusive="pass", validity="off"))
    result = run_search(runner, over="concurrency", low=2, high=16, tolerance=0.1,
                        budget=Budget(max_seconds=45, max_requests=400),
                        on_probe=lambda p: print(f"probe {p.point:g}: {p.status} {p.requests} "
                                                 f"requests {p.seconds:.1f} s {p.summary()}",
                                                 flush=True))
    described = "\n".join([f"threshold {threshold:.0f} ms", *result.table(),
                           result.headline()])
    assert result.requests <= 400, described
    assert result.max_passing is not None, described
    # at least about the slots (nothing waits below them), and the queue seen before 8
    assert SLOTS - 1 <= result.max_passing < 2 * SLOTS, described
    if result.converged:
        assert result.min_failing is not None and result.min_failing <= 2 * SLOTS, described
