"""OpenAI Responses API (``/v1/responses``), streamed and not.

A stream is typed events (``event: response.output_text.delta`` and a ``"type"`` field of
the same name) and has no ``[DONE]``: ``response.completed`` (or ``.incomplete`` /
``.failed``) is the last event, and carries the usage. What counts as a token, as for chat:

- answer: ``response.output_text.delta`` and ``response.function_call_arguments.delta``
  (a tool call's arguments are generated output);
- reasoning: ``response.reasoning_text.delta`` (vLLM, open models) and
  ``response.reasoning_summary_text.delta`` (OpenAI's models stream only a summary);
- nothing else: the lifecycle events, and ``response.output_text.done``, which repeats the
  whole text the deltas carried (counting it would double the output).

Usage is ``input_tokens`` / ``output_tokens`` / ``output_tokens_details.reasoning_tokens``.
A whole response's text is its ``output`` items (``message`` parts of type
``output_text``, ``reasoning`` items' summary and content, ``function_call`` name and
arguments), else the ``output_text`` convenience field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    NOT_CONTENT,
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_text,
    token_count,
    usage_total,
)

ANSWER_EVENTS = frozenset({"response.output_text.delta",
                           "response.function_call_arguments.delta"})
REASONING_EVENTS = frozenset({"response.reasoning_text.delta",
                              "response.reasoning_summary_text.delta"})
USAGE_EVENTS = frozenset({"response.completed", "response.incomplete"})
# The events after which a Responses stream has nothing more to say.
LAST_EVENTS = USAGE_EVENTS | {"response.failed", "error"}


_NO_RESPONSE = msgspec.Raw(b"")


class _Event(msgspec.Struct):
    # Only what is read; ``response`` (a whole response object, on lifecycle events) stays
    # undecoded until an event that needs it.
    type: str = ""
    delta: Any = None
    response: msgspec.Raw = _NO_RESPONSE
    message: Any = None
    error: Any = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_events = msgspec.json.Decoder(list[_Event]).decode


def usage_of(usage: Any) -> tuple[int | None, int | None, int | None]:
    """(input, output, reasoning) tokens of a Responses ``usage`` object."""
    if not isinstance(usage, dict):
        return None, None, None
    details = usage.get("output_tokens_details")
    reasoning = token_count(details.get("reasoning_tokens")) if isinstance(details, dict) \
        else None
    return token_count(usage.get("input_tokens")), token_count(usage.get("output_tokens")), \
        reasoning


def _failure(response: dict[str, Any]) -> str | None:
    """The error of a response object that failed (None if it did not)."""
    error = error_text(response.get("error"))
    if error is not None:
        return error
    if response.get("status") == "failed":
        return "response failed (status 'failed')"
    return None


class ResponsesEndpoint(BaseEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model,
                                "input": [{"role": "user", "content": turn.text}],
                                "stream": self.streaming}
        if turn.output_length is not None:
            body["max_output_tokens"] = turn.output_length
        return body

    # -- streamed -----------------------------------------------------------------------

    def parse_event(self, data: bytes) -> ParsedResponse:
        event: _Event = decode_json(data, _decode_event, "responses event")
        return self._parsed(event)

    def parse_events(self, events: list[bytes]) -> list[ParsedResponse]:
        # One decoder call for the whole stream: the events are JSON objects.
        try:
            decoded = _decode_events(b"[" + b",".join(events) + b"]")
        except msgspec.MsgspecError:
            return [self.parse_event(data) for data in events]  # names the bad one
        return [self._parsed(event) for event in decoded]

    def _parsed(self, event: _Event) -> ParsedResponse:
        kind = event.type
        if kind in ANSWER_EVENTS:
            delta = event.delta
            return ParsedResponse(delta) if isinstance(delta, str) and delta else NOT_CONTENT
        if kind in REASONING_EVENTS:
            delta = event.delta
            return (ParsedResponse(reasoning=delta) if isinstance(delta, str) and delta
                    else NOT_CONTENT)
        if kind in USAGE_EVENTS or kind == "response.failed":
            response = decode_json(bytes(event.response), what=f"responses {kind} event") \
                if event.response is not _NO_RESPONSE else {}
            if not isinstance(response, dict):
                raise InvalidResponse(f"responses {kind} event: 'response' is not an object")
            error = _failure(response)
            if error is not None or kind == "response.failed":
                return ParsedResponse(error=error or "response failed")
            prompt, completion, reasoning = usage_of(response.get("usage"))
            if prompt is None and completion is None:
                return NOT_CONTENT
            return ParsedResponse(None, prompt, completion, None, None, reasoning,
                                  usage_total(response.get("usage")))
        if kind == "error":
            return ParsedResponse(error=error_text(event.error) or str(event.message
                                                                        or "error event"))
        return NOT_CONTENT

    def stream_ended(self, last_event: bytes) -> bool:
        """Whether a stream whose last event is this one ended as the protocol ends it
        (a Responses stream has no ``[DONE]``)."""
        try:
            return _decode_event(last_event).type in LAST_EVENTS
        except msgspec.MsgspecError:
            return False

    # -- whole --------------------------------------------------------------------------

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body, what="responses response")
        if not isinstance(obj, dict):
            raise InvalidResponse("responses response is not a JSON object")
        error = _failure(obj)
        if error is not None:
            return ParsedResponse(error=error)
        answer: list[str] = []
        reasoning: list[str] = []
        output = obj.get("output")
        if isinstance(output, list):
            for item in output:
                if isinstance(item, dict):
                    _collect(item, answer, reasoning)
        elif isinstance(obj.get("output_text"), str):
            answer.append(obj["output_text"])
        else:
            raise InvalidResponse("responses response has no 'output' list")
        prompt, completion, reasoning_tokens = usage_of(obj.get("usage"))
        return ParsedResponse("".join(answer), prompt, completion, None,
                              "".join(reasoning) or None, reasoning_tokens,
                              usage_total(obj.get("usage")))


def _collect(item: dict[str, Any], answer: list[str], reasoning: list[str]) -> None:
    """The generated text of one ``output`` item, by kind."""
    kind = item.get("type")
    if kind == "message":
        answer.extend(_texts(item.get("content"), "output_text"))
    elif kind == "reasoning":
        reasoning.extend(_texts(item.get("summary"), "summary_text"))
        reasoning.extend(_texts(item.get("content"), "reasoning_text"))
    elif kind == "function_call":
        answer.extend(v for v in (item.get("name"), item.get("arguments"))
                      if isinstance(v, str))


def _texts(parts: Any, kind: str) -> list[str]:
    if not isinstance(parts, list):
        return []
    return [p["text"] for p in parts
            if isinstance(p, dict) and p.get("type") == kind and isinstance(p.get("text"), str)]
