"""Whatever a server sends, ``RecordDeriver.derive`` returns a record (an error or not),
and that record travels (msgpack) and aggregates: property-based, over raw bytes, random
JSON and mutated valid OpenAI bodies and streams."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.common import codec
from aiperf.common.codec import PROFILING, MetricBatch, MetricRecord, RawRecord
from aiperf.common.config import UserConfig
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.metrics.aggregate import per_request_values
from aiperf.metrics.derive import RecordDeriver
from aiperf.plugin import PluginType, plugins

MS = 1_000_000
ENDPOINTS = [("chat", True), ("chat", False), ("completions", True), ("completions", False),
             ("embeddings", False)]
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


def deriver(name: str, streaming: bool) -> RecordDeriver:
    cls = plugins.get_class(PluginType.ENDPOINT, name)
    ep = cls(UserConfig(streaming=streaming, endpoint_type=name),
             plugins.get_metadata(PluginType.ENDPOINT, name))
    return RecordDeriver(ep, BuiltinTokenizer(), [3])


DERIVERS = {key: deriver(*key) for key in ENDPOINTS}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["choices", "delta", "message", "content", "text",
                                       "usage", "reasoning", "reasoning_content", "data",
                                       "embedding", "error", "prompt_tokens",
                                       "completion_tokens", "completion_tokens_details",
                                       "reasoning_tokens", "tool_calls", "function", "name",
                                       "arguments", "x"]) | st.text(max_size=5),
                      inner, max_size=4),
    max_leaves=12,
)

VALID = {
    "chat": {"choices": [{"delta": {"content": " a", "reasoning_content": " r",
                                    "tool_calls": [{"index": 0, "function": {
                                        "name": "f", "arguments": "{}"}}]},
                          "message": {"content": "a b", "reasoning": "r"}}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                       "completion_tokens_details": {"reasoning_tokens": 1}}},
    "completions": {"choices": [{"text": " a"}],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
    "embeddings": {"data": [{"embedding": [0.1, 0.2]}], "usage": {"prompt_tokens": 3}},
}


@st.composite
def mutated(draw: st.DrawFn, name: str) -> Any:
    """A valid body with one subtree replaced by random JSON."""
    body = json.loads(json.dumps(VALID[name]))
    node: Any = body
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(list(node) if isinstance(node, dict) else
                                   list(range(len(node)))))
        if draw(st.booleans()):
            node[key] = draw(json_values)
            return body
        node = node[key]
    return body


def to_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


def payloads(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=200), json_values.map(to_bytes),
                     mutated(name).map(to_bytes), st.just(to_bytes(VALID[name])))


@st.composite
def streams(draw: st.DrawFn, name: str) -> list[tuple[int, bytes]]:
    """An SSE stream of random events (or raw bytes), cut into reads at random places."""
    if draw(st.booleans()):
        events = draw(st.lists(payloads(name), max_size=6))
        frames = [draw(st.sampled_from([b"data: ", b"data:", b"event: error\ndata: ", b": c\n"]))
                  + event + draw(st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n"]))
                  for event in events]
        if draw(st.booleans()):
            frames.append(b"data: [DONE]\n\n")
        data = b"".join(frames)
    else:
        data = draw(st.binary(max_size=300))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return [(2 * MS + i * MS, piece) for i, piece in enumerate(pieces) if piece]


def raw(chunks: list[tuple[int, bytes]], status: int = 200) -> RawRecord:
    return RawRecord(1, PROFILING, "w", 0, 0, 1 * MS, 1, 2 * MS, 99 * MS, status, chunks,
                     sent_ns=int(1.5 * MS), reused=1)


def check(record: MetricRecord, name: str, streaming: bool) -> None:
    assert isinstance(record, MetricRecord)
    if record.error is None:
        assert record.latency_ns >= 0 and record.osl >= 0 and record.isl >= 0
    # It travels to the records manager and aggregates there.
    sent = codec.metric_decoder.decode(codec.encode(MetricBatch(1, [record])))
    assert sent.records[0] == record
    per_request_values(record, streaming, name != "embeddings")


@pytest.mark.parametrize(("name", "streaming"), ENDPOINTS)
def test_any_body_gives_a_record(name: str, streaming: bool) -> None:
    derive = DERIVERS[(name, streaming)]

    @PROPERTY_SETTINGS
    @given(body=payloads(name))
    def run(body: bytes) -> None:
        check(derive.derive(raw([(50 * MS, body)])), name, streaming)

    run()


@pytest.mark.parametrize("name", ["chat", "completions"])
def test_any_stream_gives_a_record(name: str) -> None:
    derive = DERIVERS[(name, True)]

    @PROPERTY_SETTINGS
    @given(chunks=streams(name))
    def run(chunks: list[tuple[int, bytes]]) -> None:
        check(derive.derive(raw(chunks)), name, True)

    run()


@pytest.mark.parametrize("body", [
    b'{"data": [1, 2]}',
    b'{"choices": {"0": {"text": "a"}}}',
    b'{"choices": [{"text": "a"}], "usage": [1, 2]}',
    b'{"choices": [{"text": "a"}], "usage": {"completion_tokens": "12"}}',
    b'{"choices": [{"text": "a"}], "usage": {"completion_tokens": 1e400}}',
    b'{"choices": [{"text": "a"}], "usage": {"completion_tokens": 123456789012345678901234}}',
    b"\xff\xfe not utf-8 \x80",
])
@pytest.mark.parametrize(("name", "streaming"), ENDPOINTS)
def test_bodies_that_crashed_before_give_a_record(body: bytes, name: str,
                                                  streaming: bool) -> None:
    chunks = [(5 * MS, b"data: " + body + b"\n\ndata: [DONE]\n\n")] if streaming else [
        (5 * MS, body)]
    check(DERIVERS[(name, streaming)].derive(raw(chunks)), name, streaming)
