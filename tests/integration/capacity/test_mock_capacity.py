"""The search against the built-in mock's capacity model: N slots, a fixed TTFT and one
token, so a request holds its slot for exactly the TTFT and the capacity under a TTFT
objective is known (``aiperf.mock_server.slots.true_capacity``). Probes are short (60
requests, p95 objectives) and the mesh is shared by the module."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiperf.capacity import Budget, run_search
from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import ProbeRunner
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.slots import true_capacity
from pytest_aiperf.policy import VerdictPolicy
from tests.integration.capacity._calibrate import require_quiet_machine

REQUESTS = 60
# Two capacities: (slots, TTFT ms, threshold ms); each threshold sits inside the window
# where the model says the capacity is the slot count (checked by true_capacity).
CASES = [(2, 150.0, 185.0), (3, 180.0, 212.0)]
# What this client adds to a TTFT at p90 on a loaded 2-core box (measured: up to about
# 9 ms over a 100 ms TTFT with five other test sessions running), and its gap between
# requests: the model's slack.
CLIENT_MS = 5.0


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=1, command_timeout=30) as running:
        yield running


def mock_config(slots: int, ttft: float) -> MockServerConfig:
    return MockServerConfig(ttft_ms=ttft, tokens=1, slots=slots)


@pytest.fixture
def served() -> Iterator[list[MockServerProcess]]:
    servers: list[MockServerProcess] = []
    yield servers
    for server in servers:
        server.stop()


def start(servers: list[MockServerProcess], config: MockServerConfig) -> str:
    server = MockServerProcess(**config.model_dump(exclude={"host", "port"}))
    servers.append(server)
    return server.start()


@pytest.mark.parametrize("slots, ttft, threshold", CASES)
def test_the_search_finds_the_mocks_true_capacity(
    mesh: Mesh, served: list[MockServerProcess], tmp_path: Path, slots: int, ttft: float,
    threshold: float,
) -> None:
    config = mock_config(slots, ttft)
    truth = true_capacity(config, threshold, percentile=90, requests=REQUESTS,
                          client_ms=CLIENT_MS)
    assert truth == slots
    url = start(served, config)
    require_quiet_machine(mesh, url, slots, ttft, threshold)
    objective = parse_slo(f"time_to_first_token.p90<{threshold:g}ms")
    runner = ProbeRunner(mesh.run, {"url": url, "model": "m", "streaming": True,
                                    "request_count": REQUESTS, "osl": 1},
                         [objective, parse_slo("request_error_rate<=5%")],
                         over="concurrency",
                         policy=VerdictPolicy(inconclusive="extend", validity="off"))
    budget = Budget(max_requests=20 * REQUESTS, max_seconds=120)
    # From 2, not 1: a lone client on a loaded box wakes late (measured: TTFT p90 +20 ms
    # over 80 at concurrency 1, +5 at 2), which is the machine, not the capacity model.
    result = run_search(runner, over="concurrency", low=2, high=64,
                        tolerance=0.1, budget=budget)
    described = "\n".join([*result.table(), result.headline()])
    assert (result.max_passing, result.min_failing) == (truth, truth + 1), described
    assert result.converged and result.requests <= 20 * REQUESTS, described
    assert result.requests == sum(p.requests for p in result.probes)
    # goodput reads the same way: (nearly) every request good at the capacity, fewer above
    # (in a closed loop the queue can settle in waves: only one request in N + 1 waits)
    best = next(p for p in result.probes if p.point == truth)
    assert best.attainment is not None and best.attainment > 0.9, described
    assert best.attainment_interval is not None
    worst = max(result.probes, key=lambda p: p.point)
    assert worst.attainment is not None and worst.attainment < min(best.attainment, 0.9)
    data = json.loads(result.write(tmp_path).read_text())
    assert data["max_passing"] == truth and data["probes"][0]["objectives"]


def test_all_errors_stop_the_search_with_the_cause(mesh: Mesh,
                                                  served: list[MockServerProcess]) -> None:
    url = start(served, MockServerConfig(ttft_ms=1, tokens=1, error_rate=1.0,
                                         error_codes=[503]))
    runner = ProbeRunner(mesh.run, {"url": url, "model": "m", "streaming": True,
                                    "request_count": 20},
                         [parse_slo("time_to_first_token.p90<50ms")], over="concurrency",
                         policy=VerdictPolicy(inconclusive="extend", validity="off"))
    result = run_search(runner, over="concurrency", low=1, high=64)
    assert len(result.probes) == 1 and result.probes[0].status == "ERROR"
    assert result.error is not None and "every request failed (20 of 20)" in result.error
    assert "503" in result.error
    assert result.max_passing is None and result.requests == 20


def test_the_search_over_a_constant_rate_brackets_n_over_s(
    mesh: Mesh, served: list[MockServerProcess],
) -> None:
    # a shorter TTFT here: above N / S the backlog breaks the threshold by far, so only
    # the points just below it feel the machine's noise
    config = mock_config(2, 80.0)
    truth = true_capacity(config, 100, percentile=90, over="request_rate")
    assert truth == 25.0  # 2 slots / 80 ms
    url = start(served, config)
    require_quiet_machine(mesh, url, 2, 80.0, 100.0, requests=20)
    runner = ProbeRunner(mesh.run, {"url": url, "model": "m", "streaming": True, "osl": 1,
                                    "request_count": 40, "arrival_pattern": "constant"},
                         [parse_slo("time_to_first_token.p90<100ms")], over="request_rate",
                         policy=VerdictPolicy(inconclusive="extend", validity="off"))
    result = run_search(runner, over="request_rate", low=12, high=100, tolerance=0.1,
                        budget=Budget(max_requests=1500, max_seconds=90))
    described = "\n".join([*result.table(), result.headline()])
    assert result.max_passing is not None and result.min_failing is not None, described
    # above N / S the backlog grows by 6.7 ms a request at 30/s: a breach by far; a loaded
    # box's schedule jitter may make a point just below N / S fail too (never pass above)
    assert 0.75 * truth <= result.max_passing <= truth, described
    assert result.min_failing <= truth * 1.1 * 1.1, described
    assert result.converged, described


def test_a_rate_the_client_cannot_deliver_is_the_clients_limit(
    mesh: Mesh, served: list[MockServerProcess],
) -> None:
    # one worker asked for 30,000 requests/s (as tests/integration/pytest_aiperf/
    # test_invalid.py): INVALID, the search stops and names the client, not the server
    url = start(served, MockServerConfig(ttft_ms=0, tokens=1))
    runner = ProbeRunner(mesh.run, {"url": url, "model": "m", "osl": 1, "request_count": 2000},
                         [parse_slo("request_latency.p50<60s")], over="request_rate",
                         policy=VerdictPolicy(inconclusive="extend", validity="error"))
    result = run_search(runner, over="request_rate", low=30000, high=60000)
    assert [p.status for p in result.probes] == ["INVALID"], result.table()
    assert result.client_limit == 30000 and result.max_passing is None
    assert "a limit of the client, not of the server" in result.stopped
    assert result.probes[0].cause and result.probes[0].requests == 2000
