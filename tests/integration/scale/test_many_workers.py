"""64 simulated workers against one controller (tests/harness/sim_workers.py): real Worker
services, one process, real TCP and CURVE to the mesh, a transport that answers at once.
The mesh side (credits, leases, records, control) must hold up at that many connections.
Both tests share one mesh, which also shows that a run leaves nothing to the next."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from aiperf.mesh import Mesh
from aiperf.results import ProfileResult
from tests.harness.sim_workers import SIM_URL, SimWorkers, simulated_mesh

WORKERS = 64


@pytest.fixture(scope="module")
def sim_mesh() -> Iterator[tuple[Mesh, SimWorkers]]:
    with simulated_mesh(WORKERS, startup_timeout=60, command_timeout=60) as (mesh, sim):
        yield mesh, sim
    # The mesh's shutdown told every worker to leave, and they did, cleanly.
    assert sim.returncode == 0


def _check_exact(result: ProfileResult, requests: int, workers: set[str]) -> Counter[str]:
    assert result.request_count == requests
    assert result.error_count == 0, result.error_lines()
    assert result.invariant["ok"], result.invariant
    assert result.invariant["credits_issued"] == result.invariant["records_received"] == requests
    records: list[dict[str, Any]] = list(result.records)
    assert len(records) == requests
    assert len({record["metadata"]["credit_id"] for record in records}) == requests
    # Real records, derived by the record processor from the canned response's usage.
    assert all(record["metrics"]["output_token_count"]["value"] == 4 for record in records)
    per_worker = Counter(record["metadata"]["worker_id"] for record in records)
    assert set(per_worker) <= workers
    return per_worker


def test_64_workers_closed_loop_leases(sim_mesh: tuple[Mesh, SimWorkers]) -> None:
    mesh, sim = sim_mesh
    workers = {sid: pid for sid, pid in mesh.services.items() if sid.startswith("worker_")}
    assert set(workers) == {f"worker_{i}" for i in range(WORKERS)}
    # All of them are coroutines of the one simulation process.
    assert set(workers.values()) == {sim.pid}

    result = mesh.run(url=SIM_URL, concurrency=128, request_count=5000)

    per_worker = _check_exact(result, 5000, set(workers))
    # 128 slots over 64 workers: every worker got leases and spent them.
    assert set(per_worker) == set(workers)
    assert min(per_worker.values()) > 0


def test_64_workers_scheduled_credits_and_streaming(sim_mesh: tuple[Mesh, SimWorkers]) -> None:
    """The open loop: credits with send times, batched per worker, returned one by one to
    free the concurrency cap's slots; streamed responses, one record read per event."""
    mesh, _ = sim_mesh
    workers = {f"worker_{i}" for i in range(WORKERS)}

    result = mesh.run(url=SIM_URL, request_rate=4000, arrival_pattern="constant",
                      concurrency=128, request_count=3000, streaming=True)

    per_worker = _check_exact(result, 3000, workers)
    assert set(per_worker) == workers
    assert result["time_to_first_token"].count == 3000  # streamed: a first token each


@pytest.mark.parametrize("load", [{"concurrency": 32},
                                  {"request_rate": 2000, "arrival_pattern": "constant"}])
def test_64_workers_run_sessions_through_a_plain_transport_plugin(
        sim_mesh: tuple[Mesh, SimWorkers], load: dict[str, Any]) -> None:
    """Multi-turn sessions, closed loop (a slot runs each session) and open loop (each turn
    a scheduled credit), through a transport plugin with only start, send and close: making
    headers for many requests (``HttpTransport.headers_with``) is optional for a plugin."""
    mesh, _ = sim_mesh
    result = mesh.run(url=SIM_URL, conversation_num=40, conversation_turn_mean=3, isl=8,
                      osl=4, **load)
    _check_exact(result, 120, {f"worker_{i}" for i in range(WORKERS)})
    turns = Counter(record["metadata"]["turn_index"] for record in result.records)
    assert turns[1] > 0 and (turns == {0: 40, 1: 40, 2: 40} or "request_rate" in load)
