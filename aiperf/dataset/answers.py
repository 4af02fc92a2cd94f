"""A session turn's answer as the history of the next turn: the assistant message's JSON
bytes, ready to splice into the next body (``services/worker.py``).

The answer is read by the endpoint's own parser (``answer_of``), as the record processor
reads it, except for the common cases this module reads itself: a plain OpenAI chat stream
(only ``data:`` events), in one decode of all its events, and a plain chat body. These
reads give what ``answer_of`` gives (the unit tests compare the two on every shape), for
about two thirds of its CPU (15 -> 11 us a 16-token stream: a memchr for stray line breaks
instead of counting them, and structs without GC tracking; 1.8 -> 0.9 us a body). Every
turn that has a next one pays it. Measured (CPU per call, a 16-token answer): taking the
answer's JSON string out of the response undecoded (``msgspec.Raw``) and splicing it costs
more than decoding it to ``str`` and encoding it again (1.9 against 1.6 us a body, 20
against 11 us a stream), so the text is decoded; only the message around it is built
without a dict.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from aiperf.common.codec import RawRecord
from aiperf.endpoints.base import BaseEndpoint, Count
from aiperf.endpoints.chat import ChatEndpoint
from aiperf.endpoints.openai import Response
from aiperf.metrics.derive import answer_of

_MESSAGE_HEAD = b'{"role":"assistant","content":'
_encode = msgspec.json.encode
_SEPARATOR = b"\n\ndata: "
_BLANK_SEPARATOR = b",       "  # the separator's length: a comma, then JSON whitespace
_DONE_TAIL = b"\n\ndata: [DONE]\n\n"
_DONE_ONLY = b"data: [DONE]\n\n"


# gc=False: none of these can hold a reference cycle, and a tracked struct per event
# costs the decode about a sixth of its time.
class _Delta(msgspec.Struct, gc=False):
    content: str | None = None
    tool_calls: Any = None  # the endpoint's parser counts them as text: its read, then


class _Choice(msgspec.Struct, gc=False):
    delta: _Delta | None = None


class _Usage(msgspec.Struct, gc=False):
    # The endpoint's own bounds: an implausible count fails here and is read by its parser.
    completion_tokens: Count | None = None


class _Event(msgspec.Struct, gc=False):
    """What the next turn needs from one OpenAI chat stream event."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


_events = msgspec.json.Decoder(list[_Event]).decode
# The chat endpoint's own typed response: what decodes here, its parser decodes alike.
_response = msgspec.json.Decoder(Response).decode


class HistoryAnswer(NamedTuple):
    """One answered turn for the next turn's history."""

    message: bytes  # the assistant message, one JSON object
    completion_tokens: int | None  # the server's count; None when it gave none
    text: str


def history_answer(endpoint: BaseEndpoint, record: RawRecord) -> HistoryAnswer | None:
    """The answer of a finished session turn for the next turn's history; None when the
    request failed or its response is not an answer (the turn then leaves no exchange)."""
    answer = None
    if record.error is None and record.chunks and 200 <= record.status < 300:
        if not endpoint.streaming:
            if type(endpoint) is ChatEndpoint:
                answer = _chat_body(record.chunks)
        elif getattr(endpoint, "kind", None) == "chat":
            answer = _chat_stream(record.chunks)
    if answer is None:
        answer = answer_of(endpoint, record)
        if answer is None:
            return None
    text, completion = answer
    return HistoryAnswer(b"".join((_MESSAGE_HEAD, _encode(text), b"}")), completion, text)


def _chat_body(chunks: list[tuple[int, bytes]]) -> tuple[str, int | None] | None:
    """A chat body's answer and completion count as ``ChatEndpoint.parse_body`` reads them
    (its typed decode, then the first choice's message), without building its whole
    ``ParsedResponse``: 1.8 -> 0.9 us a body. None for anything but a plain answer (an
    error, no choices, tool calls, a body the typed decode refuses): ``answer_of`` then."""
    body = chunks[0][1] if len(chunks) == 1 else b"".join(read for _, read in chunks)
    try:
        response = _response(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if response.error or not response.choices:
        return None
    message = response.choices[0].message
    if message is None:
        text = ""
    elif message.tool_calls is None:
        text = message.content or ""
    else:
        return None
    usage = response.usage
    return text, None if usage is None else usage.completion_tokens


def _chat_stream(chunks: list[tuple[int, bytes]]) -> tuple[str, int | None] | None:
    """A plain OpenAI chat stream's answer and completion count; None for anything else
    (then ``answer_of`` reads it): a stream with another line than ``data:`` events (a
    comment, an event name, CR line ends), or events not of the chat shape."""
    data = chunks[0][1] if len(chunks) == 1 else b"".join(read for _, read in chunks)
    if not (data.startswith(b"data: ") and data.endswith(b"\n\n")) or b"\r" in data:
        return None
    # Each separator becomes a comma and JSON whitespace of its length, in one pass and
    # one copy: the events' data (data[6:-2] cut at the separators) stays in place as a
    # JSON array's items. A bytes object per event, split and joined again, cost 10.0
    # against 9.5 us a 16-token stream. (The separator cannot overlap itself, so replace
    # finds exactly the occurrences split would; a trailing [DONE] is cut off by offset.)
    end = len(data) - 2
    if data.endswith(_DONE_TAIL):
        end -= len(_DONE_TAIL) - 2
    elif data == _DONE_ONLY:
        return "", None
    if end <= 6:  # one empty data event, which the endpoint's parser refuses
        return None
    flat = data.replace(_SEPARATOR, _BLANK_SEPARATOR)
    if flat.find(b"\n", 6, end) >= 0:  # a line that is not a data: line of its own
        return None
    try:
        events = _events(b"".join((b"[", memoryview(flat)[6:end], b"]")))
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    texts: list[str] = []
    completion = None
    for event in events:
        if event.error is not None:
            return None
        choices = event.choices
        if choices:  # the first choice, as the endpoint's parser (and a chat client) reads
            delta = choices[0].delta
            if delta is not None:
                if delta.tool_calls is not None:
                    return None
                if delta.content:
                    texts.append(delta.content)
        usage = event.usage
        if usage is not None and usage.completion_tokens is not None:
            completion = usage.completion_tokens
    return "".join(texts), completion
