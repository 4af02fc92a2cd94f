"""A session turn's answer as the history of the next turn: the assistant message's JSON
bytes, ready to splice into the next body (``services/worker.py``).

The worker reads the common cases itself, with the chat endpoint's own typed structs, as
``ChatEndpoint`` and ``RecordDeriver`` read them:

- A plain OpenAI chat stream (only ``data:`` events, ``[DONE]`` at the end) is read in one
  decode of all its events. That read is all the record processor needs from the
  response, so the record carries it (``codec.ReadAnswer``) instead of the response's
  bytes, and the stream is parsed once, not twice (the record processor's derivation was
  28 us of a 16-token stream).
- A plain chat body gives the history only; its record keeps its bytes. A body is one
  small decode for the record processor, and building the read for it cost the worker
  more than it saved there (measured in process: 1.8 us a turn against about 1 us).

Anything else (reasoning, tool calls, an error, other framings, another endpoint) is read
by the endpoint's parser (``answer_of``) and derived from its bytes as usual. The unit
tests check both halves: the history agrees with ``answer_of``, and the record derived
from the read equals the one derived from the bytes, on every shape.

Measured (a 16-token answer): taking the answer's JSON string out of the response undecoded
(``msgspec.Raw``) and splicing it costs more than decoding it to ``str`` and encoding it
again, so the text is decoded; only the message around it is built without a dict.
"""

from __future__ import annotations

import itertools

import msgspec

from aiperf.common.codec import RawRecord, ReadAnswer
from aiperf.endpoints.base import BaseEndpoint
from aiperf.endpoints.chat import ChatEndpoint
from aiperf.endpoints.openai import Usage
from aiperf.metrics.derive import NO_USAGE, answer_of

_MESSAGE_HEAD = b'{"role":"assistant","content":'
_encode = msgspec.json.encode
_SEPARATOR = b"\n\ndata: "
_DONE_TAIL = b"\n\ndata: [DONE]\n\n"
_BLANK_LINES = itertools.repeat(b"\n\n")

# The chat endpoint's own typed response (openai.Response) with the same fields and types,
# except that reasoning, tool calls and an error must be absent or null: what decodes here
# decodes there alike and is read alike (a unit test compares the two), and what the
# parser reads otherwise fails here, in C, and is left to it. Without GC tracking (none can
# hold a cycle), which costs the decode of a stream a third less.
class _Message(msgspec.Struct, gc=False):
    content: str | None = None
    reasoning_content: None = None
    reasoning: None = None
    tool_calls: None = None


class _Choice(msgspec.Struct, gc=False):
    delta: _Message | None = None
    message: _Message | None = None
    text: str | None = None


class _Response(msgspec.Struct, gc=False):
    choices: list[_Choice] | None = None
    usage: Usage | None = None
    error: None = None


_response = msgspec.json.Decoder(_Response).decode
_responses = msgspec.json.Decoder(list[_Response]).decode


class HistoryAnswer(msgspec.Struct, gc=False):
    """One answered turn for the next turn's history (a struct: a third of a named
    tuple's cost to build, once a turn)."""

    message: bytes  # the assistant message, one JSON object
    completion_tokens: int | None  # the server's count; None when it gave none
    text: str


def history_answer(endpoint: BaseEndpoint, record: RawRecord) -> HistoryAnswer | None:
    """The answer of a finished session turn for the next turn's history; None when the
    request failed or its response is not an answer (the turn then leaves no exchange).

    A plain chat stream is read here, and ``record`` keeps the read in place of its bytes
    (``record.answer``; ``record.chunks`` emptied): call this before the record is sent.
    A plain chat body is read here too, for its history only."""
    if record.error is not None or not record.chunks or not 200 <= record.status < 300:
        return None
    if type(endpoint) is ChatEndpoint:
        chunks = record.chunks
        if not endpoint.streaming:
            answer = _chat_body(chunks)
            if answer is not None:
                return answer
        elif (read := _chat_stream(chunks)) is not None:
            record.answer = read
            record.chunks = []
            completion = read.completion_tokens
            return history_message("".join(read.texts), None if completion < 0 else completion)
    answer = answer_of(endpoint, record)
    return None if answer is None else history_message(*answer)


def history_message(text: str, completion: int | None) -> HistoryAnswer:
    return HistoryAnswer(b"".join((_MESSAGE_HEAD, _encode(text), b"}")), completion, text)


def _usage_numbers(usage: Usage) -> tuple[int, int, int, int]:
    """(prompt, completion, total, reasoning) of a typed usage, -1 for each it lacks."""
    prompt, completion, total = usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
    details = usage.completion_tokens_details
    reasoning = None if details is None else details.reasoning_tokens
    return (-1 if prompt is None else prompt, -1 if completion is None else completion,
            -1 if total is None else total, -1 if reasoning is None else reasoning)


def _chat_body(chunks: list[tuple[int, bytes]]) -> HistoryAnswer | None:
    """A chat body's answer as ``ChatEndpoint.parse_body`` reads it (its typed decode, then
    the first choice's message, and the usage's completion count). None for anything but
    a plain answer (an error, no choices, tool calls, reasoning, a body the typed decode
    refuses): the endpoint's parser reads those."""
    body = chunks[0][1] if len(chunks) == 1 else b"".join(read for _, read in chunks)
    try:
        response = _response(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if not response.choices:
        return None
    message = response.choices[0].message
    text = "" if message is None else message.content or ""
    usage = response.usage
    return history_message(text, None if usage is None else usage.completion_tokens)


def _chat_stream(chunks: list[tuple[int, bytes]]) -> ReadAnswer | None:
    """A plain OpenAI chat stream read as ``ChatEndpoint.parse_events`` and
    ``RecordDeriver`` read it; None for anything else (the endpoint's parser reads it):
    another line than ``data:`` events (a comment, an event name, CR line ends), no
    ``[DONE]`` at its end, an error, reasoning or tool calls, events its typed decode
    refuses."""
    reads = [read for _, read in chunks]
    data = reads[0] if len(reads) == 1 else b"".join(reads)
    if not (data.startswith(b"data: ") and data.endswith(_DONE_TAIL)) or b"\r" in data:
        return None
    # The events' data, cut at the separators (which cannot overlap, and hold a line
    # break, which no JSON string can), and joined with commas: one JSON array, one
    # decode. The last piece is the [DONE].
    parts = data.split(_SEPARATOR)
    events = len(parts) - 1
    parts[0] = parts[0][6:]
    del parts[-1]
    array = b"".join((b"[", b",".join(parts), b"]"))
    if array.find(b"\n") >= 0:  # a line that is not a data: line of its own
        return None
    try:
        responses = _responses(array)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if len(responses) != events:  # an empty data line, or one of two JSON values
        return None
    # Each event's first choice's text, as the endpoint's parser (and a chat client)
    # reads it; "" or None: not a token event.
    by_event = [delta.content if (choices := response.choices)
                and (delta := choices[0].delta) is not None else None
                for response in responses]
    texts = [text for text in by_event if text]
    prompt = completion = reasoning = -1
    usage = NO_USAGE
    for counts in [response.usage for response in responses if response.usage is not None]:
        numbers = _usage_numbers(counts)
        if numbers != NO_USAGE:
            usage = numbers
            if numbers[0] >= 0 or numbers[1] >= 0:  # as RecordDeriver keeps them
                if numbers[0] >= 0:
                    prompt = numbers[0]
                if numbers[1] >= 0:
                    completion = numbers[1]
                if numbers[3] >= 0:
                    reasoning = numbers[3]
    return ReadAnswer(_event_stamps(chunks, reads, data, by_event, len(texts)), texts,
                      chunks[-1][0], prompt, completion, reasoning, usage)


def _event_stamps(chunks: list[tuple[int, bytes]], reads: list[bytes], data: bytes,
                  by_event: list[str | None], answered: int) -> list[int]:
    """The stamp of the read that completed each of the ``answered`` events with text
    (their blank line), as ``RecordDeriver`` stamps them: ``data`` holds the events of
    ``by_event`` (each one's text), then the [DONE], and no line break but theirs."""
    if len(reads) == 1:  # one read (a short or coalesced stream): one stamp for all
        return [chunks[0][0]] * answered
    wanted = [index for index, text in enumerate(by_event) if text]
    if len(reads) == len(by_event) + 1 and all(map(bytes.endswith, reads, _BLANK_LINES)):
        # A read per event, [DONE] included (what a server writing each token at once
        # gives): each read ends where an event does, so event i ended in read i.
        return [chunks[i][0] for i in wanted]
    ends = list(itertools.accumulate(len(read) for read in reads))
    stamps: list[int] = []
    position = 0
    read_index = 0
    for _ in by_event:
        position = data.find(b"\n\n", position) + 2  # where the next event ends
        while ends[read_index] < position:
            read_index += 1
        stamps.append(chunks[read_index][0])
    return [stamps[i] for i in wanted]
