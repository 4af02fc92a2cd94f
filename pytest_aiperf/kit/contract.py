"""``EndpointContract``: the tests every endpoint plugin must pass, with real requests.

Each test is one clause of the contract. A broken clause fails with ``ContractBreach``:
which clause, what was seen, and how to fix it. The clauses:

1. the manifest entry is valid and consistent (path, flags, class type);
2. request bodies are JSON for short, long, unicode and empty prompts and carry the model,
   the output length and the user's extra inputs;
3. a non-streaming response parses into content, token counts and timestamps;
4. a streaming response does too, token by token (only if the plugin claims streaming);
5. HTTP errors, malformed responses and disconnects become error records with code, type
   and message;
6. a profile of a few dozen requests through a real mesh yields every metric the
   metadata promises (TTFT and ITL only when the endpoint streams tokens).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from aiperf.common.codec import PROFILING, MetricRecord, RawRecord
from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.endpoints.base import BaseEndpoint, make_endpoint
from aiperf.mesh import Mesh
from aiperf.metrics.derive import RecordDeriver
from aiperf.mock_server import MockServerThread
from aiperf.mock_server.responders import Responder
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import EndpointMetadata
from aiperf.transports import make_transport

PROMPTS = {
    "short": "hello",
    "long": " ".join(["token"] * 4000),
    "unicode": "héllo wörld — 你好 🚀 \"quoted\" \\ backslash",
    "empty": "",
}
OUTPUT_LENGTH = 7


class ContractBreach(AssertionError):
    """A clause of the endpoint contract does not hold."""

    def __init__(self, clause: str, seen: str, fix: str) -> None:
        super().__init__(f"endpoint contract, clause '{clause}': {seen}\n  how to fix: {fix}")


def _check(condition: bool, clause: str, seen: str, fix: str) -> None:
    if not condition:
        raise ContractBreach(clause, seen, fix)


async def _send(endpoint: BaseEndpoint, turn: Turn) -> RawRecord:
    transport = make_transport(endpoint.url, timeout_seconds=10, max_connections=4)
    await transport.start()
    try:
        record = RawRecord(0, PROFILING, "contract", 0, 0, 0, 0, 0, 0, 0, [])
        await transport.send(record, endpoint.url, endpoint.headers(), endpoint.encode(turn),
                             endpoint.streaming)
        return record
    finally:
        await transport.close()


class EndpointContract:
    """Subclass with ``endpoint = "<plugin name>"`` (and ``responder`` for a protocol that
    is not OpenAI's); pytest collects the clauses below as your tests."""

    endpoint: ClassVar[str] = ""
    responder: ClassVar[Responder | None] = None
    model: ClassVar[str] = "contract-model"
    extra_inputs: ClassVar[dict[str, Any]] = {"contract_probe": 42}
    profile_requests: ClassVar[int] = 24

    # -- fixtures -------------------------------------------------------------------------

    @pytest.fixture(scope="class")
    @classmethod
    def contract_server(cls) -> Iterator[Any]:
        """Starts mock servers speaking the plugin's protocol, for the whole class."""

        def start(**behaviour: Any) -> str:
            server = MockServerThread(
                responders=[cls.responder] if cls.responder else None,
                tokens=OUTPUT_LENGTH, **behaviour)
            servers.append(server)
            return server.start()

        servers: list[MockServerThread] = []
        yield start
        for server in servers:
            server.stop()

    def _metadata(self) -> EndpointMetadata:
        _check(bool(self.endpoint), "manifest", "the contract class sets no 'endpoint'",
               "set endpoint = '<plugin name>' on your EndpointContract subclass")
        try:
            meta = plugins.get_metadata(PluginType.ENDPOINT, self.endpoint)
        except Exception as exc:
            raise ContractBreach("manifest", str(exc), "register the plugin in a manifest "
                                 "(aiperf.plugins entry point) or with register_plugin() "
                                 "in conftest.py") from None
        assert isinstance(meta, EndpointMetadata)
        return meta

    def _endpoint(self, url: str = "http://127.0.0.1:1", **config: Any) -> BaseEndpoint:
        self._metadata()
        return make_endpoint(UserConfig(url=url, model=self.model, endpoint_type=self.endpoint,
                                        extra_inputs=dict(self.extra_inputs), **config))

    def _derive(self, endpoint: BaseEndpoint, raw: RawRecord) -> MetricRecord:
        return RecordDeriver(endpoint, BuiltinTokenizer(), [1]).derive(raw)

    def _request(self, url: str, streaming: bool, prompt: str = "hello") -> tuple[
            BaseEndpoint, RawRecord, MetricRecord]:
        endpoint = self._endpoint(url, streaming=streaming)
        raw = asyncio.run(_send(endpoint, Turn(prompt, 1, OUTPUT_LENGTH)))
        return endpoint, raw, self._derive(endpoint, raw)

    # -- clause 1 -------------------------------------------------------------------------

    def test_manifest_metadata_is_valid_and_consistent(self) -> None:
        meta = self._metadata()
        cls = plugins.get_class(PluginType.ENDPOINT, self.endpoint)
        _check(issubclass(cls, BaseEndpoint), "manifest",
               f"{cls.__qualname__} does not subclass BaseEndpoint",
               "derive from aiperf.endpoints.base.BaseEndpoint")
        _check(meta.endpoint_path.startswith("/"), "manifest",
               f"endpoint_path {meta.endpoint_path!r} does not start with '/'",
               "write the path as it follows the base URL, e.g. /v1/rerank")
        _check(not meta.supports_streaming or meta.produces_tokens, "manifest",
               "supports_streaming without produces_tokens",
               "a streamed response is a sequence of tokens; set produces_tokens: true or "
               "supports_streaming: false")
        for method in ("payload", "parse_body"):
            _check(getattr(cls, method) is not getattr(BaseEndpoint, method), "manifest",
                   f"{cls.__qualname__} does not implement {method}()",
                   f"implement {method}() (see aiperf/endpoints/chat.py for a model)")

    # -- clause 2 -------------------------------------------------------------------------

    @pytest.mark.parametrize("prompt_kind", list(PROMPTS))
    def test_payloads_are_json_with_model_tokens_and_extras(self, prompt_kind: str) -> None:
        meta = self._metadata()
        endpoint = self._endpoint()
        body = endpoint.encode(Turn(PROMPTS[prompt_kind], 1, OUTPUT_LENGTH))
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise ContractBreach("payload", f"{prompt_kind} prompt: body is not JSON: {exc}",
                                 "build the body as a dict; BaseEndpoint.encode serialises "
                                 "it") from None
        _check(isinstance(decoded, dict), "payload", f"body is {type(decoded).__name__}",
               "return a dict from payload()")
        text = json.dumps(decoded, ensure_ascii=False)
        _check(self.model in text, "payload", f"model {self.model!r} not in {text[:200]}",
               "put config.model in the body")
        _check(decoded.get("contract_probe") == 42, "payload",
               "extra_inputs were not merged into the body",
               "let BaseEndpoint.encode merge extra_inputs (do not override encode, or merge "
               "config.extra_inputs yourself)")
        if meta.produces_tokens:
            _check(OUTPUT_LENGTH in _values(decoded), "payload",
                   f"the output length {OUTPUT_LENGTH} is not in the body",
                   "send turn.output_length as the protocol's max-tokens field")
        if prompt_kind != "empty":
            _check(PROMPTS[prompt_kind].split()[0] in text, "payload",
                   f"the {prompt_kind} prompt is not in the body",
                   "send turn.text as the prompt")

    # -- clauses 3 and 4 -------------------------------------------------------------------

    def test_a_non_streaming_response_parses(self, contract_server: Any) -> None:
        meta = self._metadata()
        _, raw, record = self._request(contract_server(), streaming=False)
        _check(raw.error is None and record.error is None, "response",
               f"error record {record.error or raw.error}",
               "parse_body() must accept the server's success body")
        _check(record.latency_ns > 0 and record.end_ns >= record.start_ns, "response",
               "no latency measured", "return a ParsedResponse from parse_body()")
        if meta.produces_tokens:
            _check(record.osl == OUTPUT_LENGTH, "response",
                   f"output tokens {record.osl}, the server sent {OUTPUT_LENGTH}",
                   "report content (and usage.completion_tokens when the server sends it)")

    def test_a_streaming_response_parses_token_by_token(self, contract_server: Any) -> None:
        meta = self._metadata()
        if not meta.supports_streaming:
            pytest.skip("the plugin does not claim supports_streaming")
        endpoint, raw, record = self._request(contract_server(), streaming=True)
        _check(endpoint.streaming, "streaming", "streaming=True did not enable streaming",
               "supports_streaming requires honouring config.streaming")
        _check(record.error is None, "streaming", f"error record {record.error}",
               "parse_event() must accept each SSE data payload")
        events = len(record.chunk_gaps_ns) + 1
        _check(events > 1, "streaming",
               f"the response was not streamed ({events} content event, {len(raw.chunks)} "
               "network reads)",
               "set the protocol's stream flag in payload() when endpoint.streaming is true")
        _check(record.ttft_ns > 0 and record.osl == OUTPUT_LENGTH, "streaming",
               f"ttft {record.ttft_ns} ns, output tokens {record.osl}",
               "return content for each token event and None for role-only/usage events")

    # -- clause 5 -------------------------------------------------------------------------

    @pytest.mark.parametrize("behaviour", [
        {"error_rate": 1.0, "error_codes": [503]},
        {"fault": "rate_limit"},
        {"fault": "malformed"},
        {"fault": "disconnect"},
    ], ids=["http-503", "http-429", "malformed", "disconnect"])
    def test_failures_become_error_records(self, contract_server: Any,
                                           behaviour: dict[str, Any]) -> None:
        meta = self._metadata()
        streaming = meta.supports_streaming
        if behaviour.get("fault") == "disconnect" and not streaming:
            behaviour = {"fault": "malformed"}
        _, _raw, record = self._request(contract_server(**behaviour), streaming=streaming)
        error = record.error
        _check(error is not None, "errors", f"{behaviour} produced a success record",
               "raise InvalidResponse from parse_body()/parse_event() on a body that is not "
               "the protocol's; return ParsedResponse(error=...) for an error object")
        assert error is not None
        _check(bool(error.type) and bool(error.message), "errors",
               f"error without type or message: {error}", "give every error a message")
        if "error_codes" in behaviour:
            _check(error.code == 503, "errors", f"code {error.code}, expected 503",
                   "keep the HTTP status as the error code")

    # -- clause 6 -------------------------------------------------------------------------

    def test_a_profile_through_the_mesh_yields_every_promised_metric(
        self, contract_server: Any
    ) -> None:
        meta = self._metadata()
        url = contract_server(ttft_ms=2, itl_ms=1)
        streaming = meta.supports_streaming
        with Mesh(workers=1, startup_timeout=20) as mesh:
            result = mesh.run(url=url, model=self.model, endpoint_type=self.endpoint,
                              streaming=streaming, concurrency=4,
                              request_count=self.profile_requests, osl=OUTPUT_LENGTH, isl=16)
        _check(result.invariant.get("ok", False), "profile",
               f"records lost: {result.invariant}", "report every request once")
        _check(result.request_count == self.profile_requests, "profile",
               f"{result.error_count} of {self.profile_requests} requests failed: "
               f"{result.error_summary[:2]}", "see the error summary")
        promised = ["request_latency", "request_throughput", "input_sequence_length"]
        if meta.produces_tokens:
            promised += ["output_sequence_length", "output_token_throughput"]
        if meta.produces_tokens and streaming:
            promised += ["time_to_first_token", "inter_token_latency"]
        missing = [tag for tag in promised if tag not in result]
        _check(not missing, "profile", f"metrics missing: {missing}",
               "check produces_tokens / supports_streaming against what the parser returns")
        if not (meta.produces_tokens and streaming):
            _check("time_to_first_token" not in result, "profile",
                   "TTFT reported for an endpoint that does not stream tokens",
                   "set supports_streaming / produces_tokens to what the endpoint does")


def _values(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [v for value in obj.values() for v in [value, *_values(value)]]
    if isinstance(obj, list):
        return [v for value in obj for v in [value, *_values(value)]]
    return []
