"""The truth through the Python API: ``Mesh.run`` against every reference server."""

from __future__ import annotations

import pytest

from aiperf.mesh import Mesh
from tests.harness.reference_servers import ServerStats
from tests.truth.cases import CASES, CONCURRENCIES, REQUEST_TIMEOUT_S, REQUESTS, Case
from tests.truth.compare import check_run, failure_message, measure_until_the_box_keeps_time
from tests.truth.conftest import ServerPool


@pytest.mark.parametrize("concurrency", CONCURRENCIES, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_every_metric_matches_the_truth(
    truth_mesh: Mesh, reference_servers: ServerPool, case: Case, concurrency: int
) -> None:
    server = reference_servers.get(case.behaviour)

    def measure() -> tuple[list[str], ServerStats]:
        before = server.stats()
        result = truth_mesh.run(
            url=server.url, model="ref", endpoint_type=case.endpoint,
            streaming=case.streaming, concurrency=concurrency,
            request_count=REQUESTS[concurrency], request_timeout_seconds=REQUEST_TIMEOUT_S)
        seen = server.stats() - before
        assert result.invariant.get("ok"), result.invariant
        return check_run(case, concurrency, REQUESTS[concurrency], result.to_dict(),
                         list(result.records), seen), seen

    problems, seen, attempts, client_wait = measure_until_the_box_keeps_time(measure)
    assert not problems, failure_message(
        f"{case.name} at c={concurrency} ({case.about}), attempt {attempts}:", problems, seen,
        client_wait)
