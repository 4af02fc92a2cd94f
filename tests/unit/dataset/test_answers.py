"""A session turn's answer as the next turn's history (aiperf/dataset/answers.py): the
spliced message must decode to the server's answer exactly, and agree with the endpoint's
own parser (answer_of, which reads every event through it, as the record processor does)
on every response shape."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import ErrorInfo, RawRecord
from aiperf.dataset.answers import history_answer
from aiperf.metrics.derive import answer_of
from tests.harness.endpoints import make_endpoint

# Answers a JSON writer must escape, non-ASCII, astral and empty ones.
_texts = st.text(alphabet=(st.sampled_from(
    ['"', "\\", "/", "\n", "\t", "\r", "\x00", "\x1f", "é", "中", "😀", "\u2028", "a", " ",
     "{", "}", ","]) | st.characters(exclude_categories=("Cs",))), max_size=40)


def _record(chunks: list[bytes], status: int = 200) -> RawRecord:
    return RawRecord(0, 0, "worker_0", 0, 0, 0, 0, 0, 0, status,
                     [(i, chunk) for i, chunk in enumerate(chunks)])


def _body(content: Any, completion: int | None, ascii_only: bool) -> bytes:
    response: dict[str, Any] = {"choices": [{"index": 0, "message": {
        "role": "assistant", "content": content}}]}
    if completion is not None:
        response["usage"] = {"prompt_tokens": 3, "completion_tokens": completion}
    return json.dumps(response, ensure_ascii=ascii_only).encode()


def _stream(pieces: list[str], completion: int | None, ascii_only: bool) -> bytes:
    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if completion is not None:
        events.append({"choices": [], "usage": {"completion_tokens": completion}})
    lines = [f"data: {json.dumps(e, ensure_ascii=ascii_only)}\n\n" for e in events]
    return ("".join(lines) + "data: [DONE]\n\n").encode()


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` as the network reads might have cut it."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points) if b > a]


def _message(answer_bytes: bytes) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(answer_bytes)
    return decoded


@settings(max_examples=150, deadline=None)
@given(text=_texts, completion=st.none() | st.integers(0, 5000), ascii_only=st.booleans(),
       cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_a_chat_body_answer_splices_to_the_servers_text(
        text: str, completion: int | None, ascii_only: bool, cuts: list[int]) -> None:
    endpoint = make_endpoint("chat", model="m", streaming=False)
    record = _record(_split(_body(text, completion, ascii_only), cuts))
    answer = history_answer(endpoint, record)
    assert answer is not None
    assert _message(answer.message) == {"role": "assistant", "content": text}
    assert (answer.text, answer.completion_tokens) == answer_of(endpoint, record)


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(_texts, max_size=6), completion=st.none() | st.integers(0, 5000),
       ascii_only=st.booleans(), cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_a_streamed_chat_answer_splices_to_its_pieces_joined(
        pieces: list[str], completion: int | None, ascii_only: bool, cuts: list[int]) -> None:
    endpoint = make_endpoint("chat", model="m", streaming=True)
    record = _record(_split(_stream(pieces, completion, ascii_only), cuts))
    answer = history_answer(endpoint, record)
    assert answer is not None
    assert _message(answer.message) == {"role": "assistant", "content": "".join(pieces)}
    assert (answer.text, answer.completion_tokens) == answer_of(endpoint, record)


@settings(max_examples=60, deadline=None)
@given(answers=st.lists(st.tuples(_texts, _texts), max_size=5))
def test_history_of_spliced_messages_decodes_in_order(answers: list[tuple[str, str]]) -> None:
    """The worker's history: each exchange's user message and answer message, each followed
    by a comma, read back as the list of messages the next turn sends."""
    endpoint = make_endpoint("chat", model="m", streaming=False)
    history = b""
    expected = []
    for question, text in answers:
        user = msgspec.json.encode({"role": "user", "content": question})
        answer = history_answer(endpoint, _record([_body(text, 1, False)]))
        assert answer is not None
        history = b"".join((history, user, b",", answer.message, b","))
        expected += [{"role": "user", "content": question},
                     {"role": "assistant", "content": text}]
    assert msgspec.json.decode(b"[" + history[:-1] + b"]") == expected


def test_null_content_is_an_empty_answer_as_the_endpoint_reads_it() -> None:
    endpoint = make_endpoint("chat", model="m", streaming=False)
    record = _record([_body(None, 0, False)])
    answer = history_answer(endpoint, record)
    assert answer is not None and _message(answer.message)["content"] == ""
    assert (answer.text, answer.completion_tokens) == answer_of(endpoint, record) == ("", 0)


def test_failed_turns_leave_no_answer() -> None:
    endpoint = make_endpoint("chat", model="m", streaming=False)
    good = _body("hi", 1, False)
    failed = _record([good])
    failed.error = ErrorInfo(None, "ClientOSError", "reset")
    refused = _record([b'{"error": {"message": "overloaded"}}'])
    not_json = _record([b"<html>busy</html>"])
    server_error = _record([good], status=500)
    empty = _record([])
    for record in (failed, refused, not_json, server_error, empty):
        assert history_answer(endpoint, record) is None
        assert answer_of(endpoint, record) is None


def test_a_stream_of_several_choices_answers_with_the_first() -> None:
    """As a chat client keeps it, and as the record counts it: the first choice."""
    endpoint = make_endpoint("chat", model="m", streaming=True)
    data = (b'data: {"choices":[{"delta":{"content":"a"}},{"delta":{"content":"X"}}]}\n\n'
            b'data: {"choices":[{"delta":{"content":"b"}},{"delta":{"content":"Y"}}]}\n\n'
            b"data: [DONE]\n\n")
    answer = history_answer(endpoint, _record([data]))
    assert answer is not None and answer.text == "ab"


def test_a_stream_with_an_error_event_leaves_no_answer() -> None:
    endpoint = make_endpoint("chat", model="m", streaming=True)
    data = (b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n'
            b'data: {"error":{"message":"engine died"}}\n\n')
    assert history_answer(endpoint, _record([data])) is None


def test_odd_shapes_agree_with_the_endpoints_parser() -> None:
    """A lone surrogate escape, tool calls, a comment line in the stream, ASCII escapes of
    astral characters: the history holds what the endpoint's parser reads."""
    chat = make_endpoint("chat", model="m", streaming=False)
    streaming = make_endpoint("chat", model="m", streaming=True)
    tool = json.dumps({"choices": [{"message": {"content": None, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]}).encode()
    cases = [
        (chat, _record([b'{"choices":[{"message":{"content":"a\\ud800b"}}]}'])),
        (chat, _record([tool])),
        (streaming, _record([b': ping\n\n' + _stream(["x", "y"], 2, False)])),
        (streaming, _record([_stream(["\u00e9", "\U0001f600"], None, True)])),
    ]
    for endpoint, record in cases:
        _agrees_with_the_parser(endpoint, record)


def test_a_completions_answer_goes_through_the_endpoints_parser() -> None:
    endpoint = make_endpoint("completions", model="m", streaming=False)
    record = _record([json.dumps({"choices": [{"text": 'a "b"'}],
                                  "usage": {"completion_tokens": 2}}).encode()])
    answer = history_answer(endpoint, record)
    assert answer is not None
    assert _message(answer.message) == {"role": "assistant", "content": 'a "b"'}
    assert answer.completion_tokens == 2


# Pieces of an SSE stream in any order: well-formed chat events, and every framing the
# plain-stream reader must hand to the endpoint's parser (comments, event names, CR line
# ends, a data event split over two lines, blank lines, a missing space, errors).
_sse_pieces = st.sampled_from([
    b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"b\\n"}}],"usage":{"completion_tokens":2}}\n\n',
    b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n',
    b'data: {"choices":[],"usage":{"completion_tokens":7}}\n\n',
    b'data: {"choices":[{"delta":{"content":"c"}},{"delta":{"content":"d"}}]}\n\n',
    b"data: [DONE]\n\n", b": ping\n\n", b"event: message\n", b"\n", b"\r\n",
    b'data:{"choices":[{"delta":{"content":"e"}}]}\n\n',
    b'data: {"choices":[{"delta":\ndata: {"content":"f"}}]}\n\n',
    b'data: {"error":{"message":"x"}}\n\n', b'data: {"choices":"no"}\n\n', b"data: {\n\n",
    b'data: {"choices":[{"delta":{"content":"g"}}]}\r\n\r\n',
    # What the reader's separator-to-comma pass must not misread: an empty data line, a
    # comma and spaces in an answer, a separator's text escaped inside one, a bare [DONE].
    b"data: \n\n", b'data: {"choices":[{"delta":{"content":",       [DONE]"}}]}\n\n',
    # Tool calls (the parser counts them as text) and a count no server means.
    b'data: {"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}'
    b']}}]}\n\n',
    b'data: {"choices":[],"usage":{"completion_tokens":-3}}\n\n',
    b'data: {"choices":[{"delta":{"content":"\\n\\ndata: h"}}]}\n\n', b"data: [DONE]",
])


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(_sse_pieces, min_size=1, max_size=8),
       cuts=st.lists(st.integers(0, 10_000), max_size=3))
def test_any_stream_framing_agrees_with_the_endpoints_parser(
        pieces: list[bytes], cuts: list[int]) -> None:
    """The worker's own read of a plain chat stream gives what the endpoint's parser gives,
    and anything else is left to that parser: the history never depends on which read."""
    endpoint = make_endpoint("chat", model="m", streaming=True)
    _agrees_with_the_parser(endpoint, _record(_split(b"".join(pieces), cuts)))


def _agrees_with_the_parser(endpoint: Any, record: RawRecord) -> None:
    """history_answer gives what the endpoint's own parser (answer_of) gives, or None."""
    answer = history_answer(endpoint, record)
    expected = answer_of(endpoint, record)
    if expected is None:
        assert answer is None
    else:
        assert answer is not None
        assert (answer.text, answer.completion_tokens) == expected
        assert _message(answer.message) == {"role": "assistant", "content": expected[0]}
