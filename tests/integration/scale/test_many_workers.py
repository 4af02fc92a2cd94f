"""64 simulated workers against one controller (tests/harness/sim_workers.py): real Worker
services, one process, real TCP and CURVE to the mesh, a transport that answers at once.
The mesh side (credits, leases, records, control) must hold up at that many connections."""

from __future__ import annotations

from collections import Counter

from tests.harness.sim_workers import SIM_URL, simulated_mesh

WORKERS = 64
CONCURRENCY = 128
REQUESTS = 5000


def test_64_simulated_workers_hold_the_credit_lease_and_record_paths() -> None:
    with simulated_mesh(WORKERS, startup_timeout=60, command_timeout=60) as (mesh, sim):
        workers = {sid: pid for sid, pid in mesh.services.items() if sid.startswith("worker_")}
        assert set(workers) == {f"worker_{i}" for i in range(WORKERS)}
        # All of them are coroutines of the one simulation process.
        assert set(workers.values()) == {sim.pid}
        result = mesh.run(url=SIM_URL, concurrency=CONCURRENCY, request_count=REQUESTS)

    assert result.request_count == REQUESTS
    assert result.error_count == 0, result.error_lines()
    assert result.invariant["ok"], result.invariant
    assert result.invariant["credits_issued"] == result.invariant["records_received"] == REQUESTS
    records = [record["metadata"] for record in result.records]
    assert len(records) == REQUESTS
    assert len({record["credit_id"] for record in records}) == REQUESTS
    per_worker = Counter(record["worker_id"] for record in records)
    # 128 slots over 64 workers: every worker got leases and spent them.
    assert set(per_worker) == set(workers)
    assert min(per_worker.values()) > 0
    assert all(record["metrics"]["output_token_count"]["value"] == 4
               for record in result.records)
    # The mesh's shutdown told every worker to leave, and they did, cleanly.
    assert sim.returncode == 0
