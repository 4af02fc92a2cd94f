from __future__ import annotations

import json

import pytest

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import InvalidResponse
from tests.harness.endpoints import make_endpoint as endpoint

TURN = Turn(text="héllo wörld ✓", input_tokens=3, output_length=7, extra={"top_k": 2})


def test_chat_payload_carries_model_messages_tokens_stream_options_and_extras() -> None:
    ep = endpoint("chat", model="m1", streaming=True, extra_inputs={"temperature": 0.5})
    body = json.loads(ep.encode(TURN))
    assert body == {
        "model": "m1", "messages": [{"role": "user", "content": "héllo wörld ✓"}],
        "stream": True, "max_completion_tokens": 7,
        "stream_options": {"include_usage": True}, "temperature": 0.5, "top_k": 2,
    }
    assert ep.url == "http://127.0.0.1:8000/v1/chat/completions"


def test_completions_payload_uses_prompt_and_max_tokens() -> None:
    body = json.loads(endpoint("completions", model="m").encode(TURN))
    assert body["prompt"] == TURN.text and body["max_tokens"] == 7 and body["stream"] is False
    assert "stream_options" not in body


def test_embeddings_never_stream() -> None:
    ep = endpoint("embeddings", streaming=True)
    assert not ep.streaming
    assert json.loads(ep.encode(Turn(text="x", input_tokens=1)))["input"] == "x"


def test_api_key_becomes_a_bearer_header_and_user_headers_merge() -> None:
    headers = endpoint("chat", api_key="sk-1", headers={"X-A": "b"}).headers()
    assert headers["Authorization"] == "Bearer sk-1" and headers["X-A"] == "b"


@pytest.mark.parametrize(("chunk", "content", "usage"), [
    (b'{"choices":[{"delta":{"role":"assistant","content":null}}]}', None, (None, None)),
    (b'{"choices":[{"delta":{"content":""}}]}', None, (None, None)),
    (b'{"choices":[{"delta":{}}]}', None, (None, None)),
    (b'{"choices":[{"delta":{"content":" two words"}}]}', " two words", (None, None)),
    (b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}', None, (5, 9)),
])  # fmt: skip
def test_chat_stream_chunks(chunk: bytes, content: str | None, usage: tuple) -> None:
    parsed = endpoint("chat", streaming=True).parse_event(chunk)
    assert parsed.content == content
    assert (parsed.prompt_tokens, parsed.completion_tokens) == usage


def test_completions_usage_on_the_last_chunk_with_a_choice() -> None:
    parsed = endpoint("completions", streaming=True).parse_event(
        b'{"choices":[{"text":"end","finish_reason":"length"}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":4}}'
    )
    assert parsed.content == "end" and parsed.completion_tokens == 4


def test_an_error_object_is_an_error() -> None:
    parsed = endpoint("chat").parse_body(b'{"error":{"message":"overloaded","code":503}}')
    assert parsed.error == "overloaded"


def test_malformed_json_raises_invalid_response() -> None:
    with pytest.raises(InvalidResponse, match="malformed JSON"):
        endpoint("chat", streaming=True).parse_event(b'{"choices": [')


def test_embeddings_response_needs_data() -> None:
    ep = endpoint("embeddings")
    assert ep.parse_body(b'{"data":[{"embedding":[1.0]}],"usage":{"prompt_tokens":2}}'
                         ).prompt_tokens == 2
    with pytest.raises(InvalidResponse, match="no 'data' list"):
        ep.parse_body(b'{"object":"list"}')


STREAM = [
    b'{"choices":[{"delta":{"role":"assistant","content":null}}]}',
    b'{"choices":[{"delta":{"content":" a"}}]}',
    b'{"error":{"message":"overloaded"}}',
    b'{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":9}}',
]


def test_a_whole_stream_parses_as_its_events_do_one_by_one() -> None:
    ep = endpoint("chat", streaming=True)
    assert ep.parse_events(STREAM) == [ep.parse_event(data) for data in STREAM]
    assert ep.parse_events([]) == []


@pytest.mark.parametrize("bad", [b'{"choices": [', b"", b'{"a":1},{"b":2}', b"[]"])
def test_a_bad_event_in_a_stream_is_named_as_it_is_alone(bad: bytes) -> None:
    ep = endpoint("chat", streaming=True)
    with pytest.raises(InvalidResponse) as alone:
        ep.parse_event(bad)
    with pytest.raises(InvalidResponse) as in_stream:
        ep.parse_events([STREAM[1], bad, STREAM[3]])
    assert str(in_stream.value) == str(alone.value)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_chat_reads_reasoning_text_beside_the_answer(field: str) -> None:
    ep = endpoint("chat", streaming=True)
    event = ep.parse_event(json.dumps({"choices": [{"delta": {field: "hmm"}}]}).encode())
    assert (event.content, event.reasoning) == (None, "hmm")
    both = ep.parse_events([json.dumps({"choices": [{"delta": {field: "a", "content": "b"}}]})
                            .encode()])[0]
    assert (both.content, both.reasoning) == ("b", "a")
    body = ep.parse_body(json.dumps({"choices": [{"message": {"content": "x", field: "y"}}],
                                     "usage": {"completion_tokens": 5,
                                               "completion_tokens_details":
                                                   {"reasoning_tokens": 3}}}).encode())
    assert (body.content, body.reasoning, body.completion_tokens, body.reasoning_tokens) == (
        "x", "y", 5, 3)


def test_reasoning_that_is_not_text_is_ignored_not_fatal() -> None:
    ep = endpoint("chat", streaming=True)
    event = ep.parse_event(b'{"choices": [{"delta": {"reasoning": {"summary": 1}, '
                           b'"content": "ok"}}]}')
    assert (event.content, event.reasoning) == ("ok", None)


@pytest.mark.parametrize("body", [b'{"data": [1, 2]}', b'{"data": [{"x": 1}]}',
                                  b'{"data": {"embedding": []}}'])
def test_embeddings_that_break_the_schema_are_invalid_responses(body: bytes) -> None:
    with pytest.raises(InvalidResponse):
        endpoint("embeddings").parse_body(body)


def test_embeddings_read_a_string_prompt_count() -> None:
    parsed = endpoint("embeddings").parse_body(
        b'{"data": [{"embedding": [0.1]}], "usage": {"prompt_tokens": "12"}}')
    assert parsed.prompt_tokens == 12
