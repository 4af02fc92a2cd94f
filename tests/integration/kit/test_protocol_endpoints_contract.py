"""The built-in endpoints of other protocols than OpenAI's pass the plugin kit's contract,
each against the mock server's responder for its protocol (built in, so none is passed)."""

from __future__ import annotations

from typing import Any

import pytest

from aiperf.mesh import Mesh
from pytest_aiperf.kit import EndpointContract
from tests.harness.stream_end import needs_stream_end


class TestRankingsContract(EndpointContract):
    endpoint = "rankings"


class TestCohereRankingsContract(EndpointContract):
    endpoint = "cohere-rankings"


class TestNIMRankingsContract(EndpointContract):
    endpoint = "nim-rankings"


class _StreamsWithoutDone(EndpointContract):
    """A protocol whose streams end without ``[DONE]``: its streamed clauses need the
    deriver to ask the endpoint where a stream ends."""

    @needs_stream_end
    def test_a_streaming_response_parses_token_by_token(self, contract_server: Any) -> None:
        super().test_a_streaming_response_parses_token_by_token(contract_server)

    @needs_stream_end
    def test_a_profile_through_the_mesh_yields_every_promised_metric(
            self, contract_server: Any) -> None:
        super().test_a_profile_through_the_mesh_yields_every_promised_metric(contract_server)


class TestResponsesContract(_StreamsWithoutDone):
    endpoint = "responses"


class TestHuggingFaceGenerateContract(_StreamsWithoutDone):
    endpoint = "huggingface-generate"


# The template endpoint against the mock's plain JSON API (POST /), configured as AIPerf
# configures it: the template and the paths in extra_inputs.
TEMPLATE = ('{"model": {{ model|tojson }}, "prompt": {{ text|tojson }}, '
            '"max_tokens": {{ max_tokens|tojson }}, "stream": {{ stream|tojson }}}')
TEMPLATE_SETTINGS = {"payload_template": TEMPLATE, "response_field": "output.text",
                     "usage_field": "usage"}


class TestTemplateContract(EndpointContract):
    endpoint = "template"
    extra_inputs = {"contract_probe": 42, **TEMPLATE_SETTINGS}

    def test_a_profile_through_the_mesh_yields_every_promised_metric(
            self, contract_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        # The clause's profile names no extra inputs, and this endpoint needs its template.
        run = Mesh.run

        def with_template(mesh: Mesh, config: Any = None, **profile: Any) -> Any:
            return run(mesh, config, **{"extra_inputs": dict(TEMPLATE_SETTINGS), **profile})

        monkeypatch.setattr(Mesh, "run", with_template)
        super().test_a_profile_through_the_mesh_yields_every_promised_metric(contract_server)
