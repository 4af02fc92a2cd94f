"""Built-in endpoints against another implementation: llama.cpp's llama-server with
SmolLM2-135M. The Responses endpoint on its ``/v1/responses`` (whose streams end with
``response.completed`` and no ``[DONE]``, as OpenAI's do), and the template endpoint on its
native ``/completion``.

Marked ``llama``; skipped with the reason when the binary or the model is missing, failed
under CI (tests/harness/llama_server.py). Small runs: the server shares 2 cores with the
client."""

from __future__ import annotations

import pytest

from aiperf.mesh import Mesh
from pytest_aiperf.kit.servers import LlamaServer
from tests.harness.llama_server import llama_server_fixture, run_counted
from tests.harness.stream_end import needs_stream_end

pytestmark = pytest.mark.llama
REQUESTS = 4
OSL = 8

llama = llama_server_fixture(parallel=2)


@pytest.mark.parametrize("streaming", [
    False, pytest.param(True, marks=needs_stream_end)], ids=["whole", "streamed"])
def test_responses_profile_agrees_with_the_servers_own_accounting(
        mesh: Mesh, llama: LlamaServer, streaming: bool) -> None:
    # OSL and ISL are the server's usage (output_tokens / input_tokens), and its counter of
    # generated tokens agrees in total
    result, rose = run_counted(mesh, llama, endpoint_type="responses", streaming=streaming,
                               concurrency=2, request_count=REQUESTS, osl=OSL, isl=24)
    assert rose["llamacpp:tokens_predicted_total"] == REQUESTS * OSL
    assert result["input_sequence_length"].min > 24  # the chat template wraps the prompt
    if streaming:
        # the first of eight tokens, well before the last
        assert result["time_to_first_token"].p50 < result["request_latency"].p50


def test_the_template_endpoint_speaks_llama_servers_native_completion_api(
        mesh: Mesh, llama: LlamaServer) -> None:
    """Any JSON API without a plugin: llama.cpp's own ``/completion`` (``n_predict`` in;
    ``content``, ``tokens_evaluated`` and ``tokens_predicted`` out), its usage assembled
    by a JMESPath multiselect."""
    result = mesh.run(
        url=llama.url + "/completion", model="smollm2", endpoint_type="template",
        payload_template='{"prompt": {{ text|tojson }}, "n_predict": {{ max_tokens|tojson }}, '
                         '"ignore_eos": true}',
        response_field="content",
        usage_field="{prompt_tokens: tokens_evaluated, completion_tokens: tokens_predicted}",
        concurrency=2, request_count=REQUESTS, osl=OSL, isl=24, request_timeout_seconds=120)
    assert result.request_count == REQUESTS and result.error_count == 0, result.error_summary
    osl = result["output_sequence_length"]
    assert osl.min == osl.max == OSL
    assert result["input_sequence_length"].min >= 24


@needs_stream_end
def test_the_template_endpoint_streams_llama_servers_native_completion_api(
        mesh: Mesh, llama: LlamaServer) -> None:
    """The native stream sends no [DONE]: its last event says ``"stop": true``."""
    result = mesh.run(
        url=llama.url + "/completion", model="smollm2", endpoint_type="template",
        streaming=True,
        payload_template='{"prompt": {{ text|tojson }}, "n_predict": {{ max_tokens|tojson }}, '
                         '"ignore_eos": true, "stream": {{ stream|tojson }}}',
        response_field="content", stream_end_field="stop",
        usage_field="{prompt_tokens: tokens_evaluated, completion_tokens: tokens_predicted}",
        concurrency=2, request_count=REQUESTS, osl=OSL, isl=24, request_timeout_seconds=120)
    assert result.request_count == REQUESTS and result.error_count == 0, result.error_summary
    assert result["output_sequence_length"].min == result["output_sequence_length"].max == OSL
    assert result["time_to_first_token"].p50 < result["request_latency"].p50
