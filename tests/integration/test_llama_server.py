"""A real engine: llama.cpp's llama-server with SmolLM2-135M, profiled through the mesh.

Marked ``llama``; skipped with the reason when the binary or the model is missing, failed
under CI, where ``.ci/run`` builds and installs both (tests/harness/llama_server.py). The
server shares 2 cores with the client, so the runs are small.
"""

from __future__ import annotations

import pytest

from aiperf.mesh import Mesh
from pytest_aiperf.kit.servers import LlamaServer
from tests.harness.llama_server import llama_server_fixture, run_counted

pytestmark = pytest.mark.llama
REQUESTS = 16
OSL = 16

llama = llama_server_fixture(parallel=4)


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_a_streaming_profile_agrees_with_the_servers_own_accounting(
    mesh: Mesh, llama: LlamaServer, endpoint: str
) -> None:
    # no request lost, none failed; OSL is the requested length, and it is the server's
    # usage.completion_tokens (the records prefer usage; the server's counter must agree in
    # total)
    result, rose = run_counted(mesh, llama, endpoint_type=endpoint, streaming=True,
                               concurrency=4, request_count=REQUESTS, osl=OSL, isl=24)
    predicted = rose["llamacpp:tokens_predicted_total"]
    assert predicted == REQUESTS * OSL

    # measured ITL within 25 % of the server's own time per generated token
    seconds = rose["llamacpp:tokens_predicted_seconds_total"]
    server_ms_per_token = seconds / predicted * 1000
    measured = result["inter_token_latency"].avg
    assert abs(measured - server_ms_per_token) / server_ms_per_token < 0.25, (
        measured, server_ms_per_token)


def test_server_metrics_show_llamacpps_own_counters_and_gauges(
    mesh: Mesh, llama: LlamaServer
) -> None:
    requests = 8
    result = mesh.run(url=llama.url, model="smollm2", streaming=True, concurrency=4,
                      request_count=requests, osl=OSL, isl=24,
                      extra_inputs={"ignore_eos": True}, request_timeout_seconds=120,
                      server_metrics=True, server_metrics_interval=0.25)
    assert result.request_count == requests and result.error_count == 0, result.error_summary
    server = result.server
    assert server is not None and server.endpoints_successful == [llama.url + "/metrics"]
    # the server's token counter rose by exactly what the run asked for (the scrape after
    # the run sees every request's tokens; nothing else talked to the server meanwhile)
    assert server["llamacpp:tokens_predicted_total"].total == requests * OSL
    assert server["llamacpp:prompt_tokens_total"].total > 0
    # a gauge, sampled during the run: never more requests in process than its 4 slots
    processing = server["llamacpp:requests_processing"]
    assert processing.type == "gauge" and 0 <= processing.max <= 4
    from pytest_aiperf.slo import evaluate, parse_objectives

    (verdict,) = evaluate(parse_objectives({"server.llamacpp:requests_processing.max": "<= 4"}),
                          result)
    assert verdict.status == "PASS", verdict
