"""The Responses API and TGI endpoints: bodies, every event kind, where a stream ends, and
the mock's framing of both protocols read back by the endpoints."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import InvalidResponse, ParsedResponse
from aiperf.metrics.derive import _sse_events
from aiperf.mock_server.responders import (
    GenerateResponder,
    GenerateStreamResponder,
    RequestPlan,
    Responder,
    ResponsesResponder,
    token_texts,
)
from tests.harness.endpoints import make_endpoint as endpoint

TURN = Turn(text="héllo wörld", input_tokens=2, output_length=7, extra={"top_p": 0.5})


def served_stream(responder: Responder, plan: RequestPlan) -> list[bytes]:
    """The data payloads of a stream as the mock frames it, cut as the deriver cuts it."""
    parts = token_texts(plan.output_tokens, 1)
    raw = b"".join([*responder.first_events("r1"),
                    *(responder.nth_token_event("r1", i, len(parts), text, plan)
                      for i, text in enumerate(parts)),
                    *responder.last_events("r1", plan.prompt_tokens, plan.output_tokens,
                                           plan.include_usage),
                    responder.stream_end])
    return [data for _, _, data in _sse_events([(0, raw)])]


# -- Responses --------------------------------------------------------------------------


def test_responses_body() -> None:
    ep = endpoint("responses", model="m", streaming=True, extra_inputs={"store": False})
    assert json.loads(ep.encode(TURN)) == {
        "model": "m", "input": [{"role": "user", "content": "héllo wörld"}], "stream": True,
        "max_output_tokens": 7, "store": False, "top_p": 0.5}
    assert ep.url == "http://127.0.0.1:8000/v1/responses"


def event(kind: str, **fields: object) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


COMPLETED = event("response.completed", response={
    "id": "resp_1", "status": "completed", "output": [],
    "usage": {"input_tokens": 5, "output_tokens": 9,
              "output_tokens_details": {"reasoning_tokens": 3}}})


@pytest.mark.parametrize(("data", "expected"), [
    (event("response.created", response={"id": "r", "status": "in_progress"}),
     ParsedResponse()),
    (event("response.output_text.delta", delta=" hi", output_index=0), ParsedResponse(" hi")),
    (event("response.output_text.delta", delta=""), ParsedResponse()),
    (event("response.function_call_arguments.delta", delta='{"a"'), ParsedResponse('{"a"')),
    (event("response.reasoning_text.delta", delta=" think"),
     ParsedResponse(reasoning=" think")),
    (event("response.reasoning_summary_text.delta", delta=" sum"),
     ParsedResponse(reasoning=" sum")),
    (event("response.output_text.done", text="the whole text"), ParsedResponse()),
    (COMPLETED, ParsedResponse(None, 5, 9, None, None, 3)),
    (event("response.incomplete", response={"usage": {"input_tokens": 5,
                                                      "output_tokens": "4"}}),
     ParsedResponse(None, 5, 4)),
    (event("response.failed", response={"status": "failed",
                                        "error": {"message": "overloaded"}}),
     ParsedResponse(error="overloaded")),
    (event("error", message="bad request", code="invalid"), ParsedResponse(error="bad request")),
    (event("response.future_event", delta="x"), ParsedResponse()),
])  # fmt: skip
def test_responses_events(data: bytes, expected: ParsedResponse) -> None:
    ep = endpoint("responses", streaming=True)
    assert ep.parse_event(data) == expected
    assert ep.parse_events([data]) == [expected]


def test_a_stream_ends_with_its_last_lifecycle_event() -> None:
    ep = endpoint("responses", streaming=True)
    assert ep.stream_ended(COMPLETED)
    assert ep.stream_ended(event("response.failed", response={}))
    assert not ep.stream_ended(event("response.output_text.delta", delta="x"))
    assert not ep.stream_ended(b'{"type": "response.compl')


def test_a_malformed_event_is_named() -> None:
    ep = endpoint("responses", streaming=True)
    good = event("response.output_text.delta", delta="a")
    with pytest.raises(InvalidResponse, match="malformed JSON"):
        ep.parse_events([good, b'{"type": "response.output_text.delta", "delta": "x"'])


@pytest.mark.parametrize(("body", "content", "reasoning", "usage"), [
    ({"object": "response", "status": "completed",
      "output": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "s"}],
                  "content": [{"type": "reasoning_text", "text": " r"}]},
                 {"type": "message", "content": [{"type": "output_text", "text": "hi"},
                                                 {"type": "refusal", "refusal": "no"}]},
                 {"type": "function_call", "name": "f", "arguments": "{}"}],
      "usage": {"input_tokens": 4, "output_tokens": 6}},
     "hif{}", "s r", (4, 6)),
    ({"object": "response", "output_text": "plain"}, "plain", None, (None, None)),
    ({"object": "response", "output": []}, "", None, (None, None)),
])  # fmt: skip
def test_whole_responses(body: dict[str, object], content: str, reasoning: str | None,
                         usage: tuple[int | None, int | None]) -> None:
    parsed = endpoint("responses").parse_body(json.dumps(body).encode())
    assert (parsed.content, parsed.reasoning) == (content, reasoning)
    assert (parsed.prompt_tokens, parsed.completion_tokens) == usage


def test_a_failed_whole_response_is_an_error_and_another_shape_invalid() -> None:
    ep = endpoint("responses")
    failed = ep.parse_body(b'{"status": "failed", "error": {"message": "quota"}}')
    assert failed.error == "quota"
    assert ep.parse_body(b'{"error": {"message": "nope"}}').error == "nope"
    with pytest.raises(InvalidResponse):
        ep.parse_body(b'{"choices": []}')
    with pytest.raises(InvalidResponse):
        ep.parse_body(b"[1]")


@settings(max_examples=20, deadline=None)
@given(tokens=st.integers(1, 40), reasoning=st.integers(0, 40), prompt=st.integers(0, 500))
def test_the_mock_stream_reads_back_token_for_token(tokens: int, reasoning: int,
                                                   prompt: int) -> None:
    responder = ResponsesResponder(reasoning_tokens=reasoning)
    plan = RequestPlan(stream=True, output_tokens=tokens, prompt_tokens=prompt)
    payloads = served_stream(responder, plan)
    ep = endpoint("responses", streaming=True)
    parsed = ep.parse_events(payloads)
    assert parsed == [ep.parse_event(p) for p in payloads]
    assert ep.stream_ended(payloads[-1]) and b"[DONE]" not in payloads
    answers = [p for p in parsed if p.content]
    thoughts = [p for p in parsed if p.reasoning]
    assert len(thoughts) == min(reasoning, tokens) and len(answers) == tokens - len(thoughts)
    usage = parsed[-1]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.reasoning_tokens) == (
        prompt, tokens, min(reasoning, tokens))
    whole = ep.parse_body(responder.body("r1", "".join(token_texts(tokens, tokens)), plan))
    assert "".join(p.content or "" for p in answers) == whole.content
    assert "".join(p.reasoning or "" for p in thoughts) == (whole.reasoning or "")


# -- TGI --------------------------------------------------------------------------------


def test_tgi_body_and_the_stream_route() -> None:
    ep = endpoint("huggingface-generate", model="m", extra_inputs={"details": True})
    assert json.loads(ep.encode(TURN)) == {
        "model": "m", "inputs": "héllo wörld", "parameters": {"max_new_tokens": 7},
        "details": True, "top_p": 0.5}
    assert ep.url == "http://127.0.0.1:8000/generate"
    assert endpoint("huggingface-generate", streaming=True).url.endswith("/generate_stream")


TOKEN = b'{"index":1,"token":{"id":5,"text":" hi","logprob":-0.1,"special":false},' \
        b'"generated_text":null,"details":null}'
LAST = b'{"index":2,"token":{"id":2,"text":"","logprob":0,"special":true},' \
       b'"generated_text":"hi","details":{"finish_reason":"eos_token",' \
       b'"generated_tokens":2,"input_length":4,"seed":null}}'


def test_tgi_events() -> None:
    ep = endpoint("huggingface-generate", streaming=True)
    assert ep.parse_events([TOKEN, LAST]) == [ParsedResponse(" hi"),
                                              ParsedResponse(None, 4, 2)]
    assert ep.stream_ended(LAST) and not ep.stream_ended(TOKEN)
    older = LAST.replace(b'"input_length"', b'"prompt_tokens"')
    assert ep.parse_event(older) == ParsedResponse(None, 4, 2)
    assert ep.parse_event(b'{"error":"Request failed during generation",'
                          b'"error_type":"generation"}').error == \
        "Request failed during generation"


@pytest.mark.parametrize(("body", "content", "usage"), [
    (b'{"generated_text":" a b"}', " a b", (None, None)),
    (b'[{"generated_text":" a"}]', " a", (None, None)),
    (b'{"generated_text":" a","details":{"generated_tokens":1,"finish_reason":"length"}}',
     " a", (None, 1)),
])  # fmt: skip
def test_tgi_whole_answers(body: bytes, content: str, usage: tuple) -> None:
    parsed = endpoint("huggingface-generate").parse_body(body)
    assert parsed.content == content and (parsed.prompt_tokens, parsed.completion_tokens) == usage


def test_tgi_errors_and_other_shapes() -> None:
    ep = endpoint("huggingface-generate")
    assert ep.parse_body(b'{"error":"Input validation error","error_type":"validation"}') \
        .error == "Input validation error"
    for body in (b'{"text": "x"}', b'[{"generated_text":"a"},{"generated_text":"b"}]'):
        with pytest.raises(InvalidResponse):
            ep.parse_body(body)


@settings(max_examples=20, deadline=None)
@given(tokens=st.integers(1, 40), prompt=st.integers(0, 500))
def test_the_mock_tgi_stream_and_body_read_back(tokens: int, prompt: int) -> None:
    plan = RequestPlan(stream=True, output_tokens=tokens, prompt_tokens=prompt)
    payloads = served_stream(GenerateStreamResponder(), plan)
    ep = endpoint("huggingface-generate", streaming=True)
    parsed = ep.parse_events(payloads)
    assert len(payloads) == tokens and all(p.content for p in parsed)
    assert ep.stream_ended(payloads[-1]) and not any(ep.stream_ended(p) for p in payloads[:-1])
    assert (parsed[-1].prompt_tokens, parsed[-1].completion_tokens) == (prompt, tokens)
    text = "".join(token_texts(tokens, tokens))
    assert "".join(p.content or "" for p in parsed) == text
    whole = GenerateResponder().body("r1", text, RequestPlan(False, tokens, prompt, True))
    assert endpoint("huggingface-generate").parse_body(whole).completion_tokens == tokens
