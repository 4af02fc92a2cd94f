"""A session turn's answer as the next turn's history (aiperf/dataset/answers.py): the
spliced message must decode to the server's answer exactly, and agree with the endpoint's
own parser (answer_of, which reads every event through it) on every response shape; and
where the worker's own read replaces the response's bytes in the record, the record
processor must derive from that read exactly the record it derives from the bytes."""

from __future__ import annotations

import json
from itertools import pairwise
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import ErrorInfo, RawRecord
from aiperf.dataset.answers import HistoryAnswer, history_answer
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.metrics.derive import RecordDeriver, answer_of
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
    reads = list(record.chunks)
    answer = _agrees_with_the_parser(endpoint, record)
    assert answer is not None
    assert _message(answer.message) == {"role": "assistant", "content": text}
    # A body's record keeps its bytes: the record processor derives it as any other.
    assert record.answer is None and record.chunks == reads


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(_texts, max_size=6), completion=st.none() | st.integers(0, 5000),
       ascii_only=st.booleans(), cuts=st.lists(st.integers(0, 10_000), max_size=4))
def test_a_streamed_chat_answer_splices_to_its_pieces_joined(
        pieces: list[str], completion: int | None, ascii_only: bool, cuts: list[int]) -> None:
    endpoint = make_endpoint("chat", model="m", streaming=True)
    answer = _agrees_with_the_parser(
        endpoint, _record(_split(_stream(pieces, completion, ascii_only), cuts)), read=True)
    assert answer is not None
    assert _message(answer.message) == {"role": "assistant", "content": "".join(pieces)}


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
    answer = _agrees_with_the_parser(endpoint, _record([_body(None, 0, False)]))
    assert answer is not None and _message(answer.message)["content"] == ""
    assert (answer.text, answer.completion_tokens) == ("", 0)


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
        assert answer_of(endpoint, record) is None
        assert history_answer(endpoint, record) is None


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
    # Usage as servers send it, and as the record keeps it (the last usage event whole;
    # the last prompt and completion counts), reasoning, a falsy error, two JSON values
    # on one data line, a field of the wrong type the parser's typed decode refuses.
    b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,'
    b'"total_tokens":7}}\n\n',
    b'data: {"choices":[],"usage":{"total_tokens":9}}\n\n',
    b'data: {"choices":[],"usage":{"completion_tokens":3,"completion_tokens_details":'
    b'{"reasoning_tokens":1}}}\n\n',
    b'data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"z"}}],"error":false}\n\n',
    b'data: {"choices":[]},{"choices":[]}\n\n',
    b'data: {"choices":[{"delta":{"content":"t"},"text":5}]}\n\n',
    b'data: {"choices":[{"delta":{"role":"assistant","content":"r"}}]}\n\n',
    b'data: {"choices":[{"delta":{"content":"\\n\\ndata: h"}}]}\n\n', b"data: [DONE]",
])


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_sse_pieces, min_size=1, max_size=8),
       cuts=st.lists(st.integers(0, 10_000), max_size=3), read_per_piece=st.booleans(),
       done=st.booleans())
def test_any_stream_framing_agrees_with_the_endpoints_parser(
        pieces: list[bytes], cuts: list[int], read_per_piece: bool, done: bool) -> None:
    """The worker's own read of a plain chat stream gives what the endpoint's parser gives
    and derives to the same record, and anything else is left to that parser: neither the
    history nor the record depends on which read. Reads cut anywhere, or one per event
    (as a server writing each token at once sends them)."""
    endpoint = make_endpoint("chat", model="m", streaming=True)
    if done:
        pieces = [*pieces, b"data: [DONE]\n\n"]
    chunks = pieces if read_per_piece else _split(b"".join(pieces), cuts)
    _agrees_with_the_parser(endpoint, _record(chunks))


def _events(*events: str) -> list[bytes]:
    return [f"data: {e}\n\n".encode() for e in (*events, "[DONE]")]


_ROLE = '{"choices":[{"delta":{"role":"assistant","content":null}}]}'
_A = '{"choices":[{"delta":{"content":"a b"}}]}'
_B = '{"choices":[{"delta":{"content":"c"}}]}'


@pytest.mark.parametrize(("events", "plain"), [
    (_events(_ROLE, _A, _B), True),
    # The record's reasoning count and usage, from the details of the last usage event.
    (_events(_A, '{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3,'
                 '"completion_tokens_details":{"reasoning_tokens":1}}}'), True),
    # The last usage event whole for usage_*; the last prompt and completion counts kept.
    (_events(_A, '{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3}}',
             '{"choices":[],"usage":{"total_tokens":9}}'), True),
    (_events(_A, '{"choices":[],"usage":{"completion_tokens":3}}',
             '{"choices":[],"usage":{"prompt_tokens":2,"total_tokens":9}}'), True),
    # A reasoning count without a prompt or completion count is in usage, not kept alone.
    (_events(_A, '{"choices":[],"usage":{"total_tokens":5,"completion_tokens_details":'
                 '{"reasoning_tokens":2}}}'), True),
    (_events(_A, '{"choices":[]},{"choices":[]}', _B), False),
    (_events(_A, '{"choices":[{"delta":{"reasoning_content":"hm"}}]}', _B), False),
    (_events(_A, '{"choices":[{"delta":{"content":"z"}}],"error":false}'), False),
    (_events(_A, '{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f"}}]}}]}'),
     False),
    (_events('{"choices":[{"delta":{"content":"a"}},{"delta":{"content":"X"}}]}', _B), True),
])
@pytest.mark.parametrize("framing", ["one read", "a read per event", "cut every 7 bytes"])
def test_streams_read_as_the_parser_reads_them(events: list[bytes], plain: bool,
                                               framing: str) -> None:
    """Each framing of each stream: the history agrees with the parser and the record
    derives alike; a plain stream is read by the worker, whatever its reads."""
    data = b"".join(events)
    chunks = {"one read": [data], "a read per event": events,
              "cut every 7 bytes": [data[i:i + 7] for i in range(0, len(data), 7)]}[framing]
    record = _record(chunks)
    _agrees_with_the_parser(make_endpoint("chat", model="m", streaming=True), record,
                            read=plain)


# Bodies: plain ones, and every shape the plain-body reader must hand to the parser.
_bodies = st.sampled_from([
    b'{"choices":[{"message":{"content":"hi"}}]}',
    b'{"choices":[{"message":{"content":null}}],"usage":{"prompt_tokens":3}}',
    b'{"choices":[{"message":{"content":"a"}},{"message":{"content":"b"}}],'
    b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":6}}',
    b'{"choices":[{"message":{"content":"x","reasoning_content":"think"}}],'
    b'"usage":{"completion_tokens":4,"completion_tokens_details":{"reasoning_tokens":3}}}',
    b'{"choices":[{"message":{"content":null,"tool_calls":[{"function":'
    b'{"name":"f","arguments":"{}"}}]}}]}',
    b'{"choices":[{"message":{"content":"y"}}],"error":false}',
    b'{"choices":[{"message":{"content":"y"}}],"usage":{"total_tokens":"12"}}',
    b'{"choices":[{"message":{"content":"y"}}],"usage":{"completion_tokens":-1}}',
    b'{"choices":[{"message":{"content":"y"},"text":5}]}',
    b'{"choices":[]}', b'{"error":{"message":"busy"}}', b"[]", b"{", b"",
])


@settings(max_examples=200, deadline=None)
@given(body=_bodies, cuts=st.lists(st.integers(0, 10_000), max_size=2))
def test_any_body_agrees_with_the_endpoints_parser(body: bytes, cuts: list[int]) -> None:
    endpoint = make_endpoint("chat", model="m", streaming=False)
    _agrees_with_the_parser(endpoint, _record(_split(body, cuts) or [body]))


def _agrees_with_the_parser(endpoint: Any, record: RawRecord,
                            read: bool = False) -> HistoryAnswer | None:
    """history_answer gives what the endpoint's own parser (answer_of) gives, or None; and
    the record it leaves derives exactly as the record of the response's bytes did.
    ``read``: the worker's own read must have taken it (a plain answer)."""
    original = msgspec.structs.replace(record, chunks=list(record.chunks))
    expected = answer_of(endpoint, original)
    deriver = RecordDeriver(endpoint, BuiltinTokenizer(), [0])
    from_bytes = deriver.derive(original)
    answer = history_answer(endpoint, record)
    if expected is None:
        assert answer is None
    else:
        assert answer is not None
        assert (answer.text, answer.completion_tokens) == expected
    if read:
        assert record.answer is not None and record.chunks == []
    if record.answer is not None:
        assert record.chunks == []
        assert msgspec.msgpack.decode(msgspec.msgpack.encode(record), type=RawRecord) == record
    assert deriver.derive(record) == from_bytes
    return answer
