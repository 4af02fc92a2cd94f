"""A session turn's answer as the history of the next turn: the assistant message's JSON
bytes, ready to splice into the next body (``services/worker.py``).

For OpenAI chat answers (the only endpoint kind whose requests carry a history) the
answer's JSON string is taken from the response as the server wrote it and never decoded
to ``str`` and encoded again: the string a JSON reader gets from those bytes is the
server's answer, character for character. A streamed answer's pieces are joined the same
way, inside one pair of quotes. Anything else (another endpoint kind, ``\\u`` escapes, tool
calls, a body that does not fit the shape) goes through the endpoint's own parser, as the
record processor reads it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from aiperf.common.codec import RawRecord
from aiperf.endpoints.base import BaseEndpoint
from aiperf.metrics.derive import answer_of

_SEPARATOR = b"\n\ndata: "
_DONE = b"[DONE]"
_MESSAGE_HEAD = b'{"role":"assistant","content":'
_NULL = msgspec.Raw(b"null")


class HistoryAnswer(NamedTuple):
    """One answered turn for the next turn's history."""

    message: bytes  # the assistant message, one JSON object
    completion_tokens: int | None  # the server's count; None when it gave none
    raw_text: bytes  # the content as a JSON string (quotes included), for a token count

    def text(self) -> str:
        """The answer's text (decoded only when a tokenizer must count it)."""
        text: str = msgspec.json.decode(self.raw_text, type=str)
        return text


class _Message(msgspec.Struct):
    content: msgspec.Raw = _NULL
    tool_calls: Any = None


class _Choice(msgspec.Struct):
    message: _Message | None = None
    delta: _Message | None = None


class _Usage(msgspec.Struct):
    completion_tokens: Any = None


class _Response(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


_decode_body = msgspec.json.Decoder(_Response).decode
_decode_events = msgspec.json.Decoder(list[_Response]).decode


def assistant_message(raw_text: bytes) -> bytes:
    """The assistant message holding ``raw_text`` (a JSON string, quotes included)."""
    return b"".join((_MESSAGE_HEAD, raw_text, b"}"))


def _count(value: Any) -> int | None:
    # A count the server gave: a non-negative int (JSON true is no count).
    return value if type(value) is int and value >= 0 else None


def _plain(raw: bytes) -> bool:
    """Whether ``raw`` is a JSON string the fast path may keep as it is: no ``\\u`` escape
    (a lone surrogate there would fail the record processor's decode but not a splice)."""
    return raw[:1] == b'"' and b"\\u" not in raw


def _chat_body(body: bytes) -> HistoryAnswer | None:
    try:
        response = _decode_body(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if response.error is not None or not response.choices:
        return None
    message = response.choices[0].message
    if message is None or message.tool_calls is not None:
        return None
    raw = bytes(message.content)
    if raw == b"null":
        raw = b'""'  # no content: an empty answer, as the endpoint's parser reads it
    elif not _plain(raw):
        return None
    usage = response.usage
    return HistoryAnswer(assistant_message(raw),
                         None if usage is None else _count(usage.completion_tokens), raw)


def _chat_stream(data: bytes) -> HistoryAnswer | None:
    if not (data.startswith(b"data: ") and data.endswith(b"\n\n")) or b"\r" in data:
        return None
    payloads = data[6:-2].split(_SEPARATOR)
    if data.count(b"\n") != 2 * len(payloads):
        return None  # comments, named events or multi-line data: the general reader
    if payloads[-1] == _DONE:
        payloads.pop()
    try:
        events = _decode_events(b"[" + b",".join(payloads) + b"]")
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    pieces: list[bytes] = []
    completion = None
    for event in events:
        if event.error is not None:
            return None
        for choice in event.choices or ():
            delta = choice.delta
            if delta is None:
                continue
            if delta.tool_calls is not None:
                return None
            raw = bytes(delta.content)
            if raw == b"null":
                continue  # a role-only or closing chunk
            if not _plain(raw):
                return None
            if len(raw) > 2:
                pieces.append(raw[1:-1])
        if event.usage is not None:
            count = _count(event.usage.completion_tokens)
            if count is not None:
                completion = count
    raw_text = b'"' + b"".join(pieces) + b'"'
    return HistoryAnswer(assistant_message(raw_text), completion, raw_text)


def history_answer(endpoint: BaseEndpoint, record: RawRecord) -> HistoryAnswer | None:
    """The answer of a finished session turn for the next turn's history; None when the
    request failed or its response is not an answer (the turn then leaves no exchange)."""
    if record.error is not None or not record.chunks or not 200 <= record.status < 300:
        return None
    if getattr(endpoint, "kind", None) == "chat":
        chunks = record.chunks
        data = chunks[0][1] if len(chunks) == 1 else b"".join(read for _, read in chunks)
        fast = _chat_stream(data) if endpoint.streaming else _chat_body(data)
        if fast is not None:
            return fast
    answer = answer_of(endpoint, record)
    if answer is None:
        return None
    text, completion = answer
    raw_text = msgspec.json.encode(text)
    return HistoryAnswer(assistant_message(raw_text), completion, raw_text)
