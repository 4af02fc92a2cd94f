"""What the OpenAI-style token endpoints share: the body's frame, usage, errors, choices.

Responses are decoded straight into typed msgspec structs that name only the fields we
read (unknown fields are skipped without building dicts): a record processor parses every
streamed event of every request, so this is the tool's busiest parser. A subclass says
where the prompt goes (``prompt_fields``), what the max-tokens field is called, and where
the text sits in a streamed choice and in a whole one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    NOT_CONTENT,
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    Usage,
    decode_json,
    error_text,
    usage_counts,
    usage_total,
)


class Message(msgspec.Struct):
    content: str | None = None
    # Reasoning text: ``reasoning_content`` (older vLLM/SGLang/DeepSeek) or ``reasoning``
    # (newer). Untyped: a server that puts something else there loses only its reasoning
    # text, not the whole response.
    reasoning_content: Any = None
    reasoning: Any = None
    # A tool call's name and arguments are generated tokens too (answer, not reasoning).
    tool_calls: Any = None


class Choice(msgspec.Struct):
    delta: Message | None = None
    message: Message | None = None
    text: str | None = None


class Response(msgspec.Struct):
    choices: list[Choice] | None = None
    # Typed for speed; a usage that does not fit is read by the lenient twin below.
    usage: Usage | None = None
    error: Any = None


class LenientResponse(msgspec.Struct):
    """``Response`` with ``usage`` untyped: usage is advisory (the tokenizer fills in), so
    a malformed one ("12", a list, a negative count) must not fail the response;
    ``usage_counts`` reads what it can."""

    choices: list[Choice] | None = None
    usage: Any = None
    error: Any = None


_decode = msgspec.json.Decoder(Response).decode
_decode_lenient = msgspec.json.Decoder(LenientResponse).decode
_decode_many = msgspec.json.Decoder(list[Response]).decode


class OpenAITokenEndpoint(BaseEndpoint):
    max_tokens_field: ClassVar[str] = "max_tokens"
    kind: ClassVar[str] = "completions"

    def prompt_fields(self, turn: Turn) -> dict[str, Any]:
        raise NotImplementedError

    def event_text(self, choice: Choice) -> str | None:
        raise NotImplementedError

    def body_text(self, choice: Choice) -> str | None:
        raise NotImplementedError

    def event_reasoning(self, choice: Choice) -> str | None:
        """A streamed choice's reasoning text; None where the endpoint has none."""
        return None

    def body_reasoning(self, choice: Choice) -> str | None:
        return None

    def payload(self, turn: Turn) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, **self.prompt_fields(turn),
                                "stream": self.streaming}
        if turn.output_length is not None:
            body[self.max_tokens_field] = turn.output_length
        if self.streaming:
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self._parsed_event(self._decode(data, "chunk"))

    def parse_events(self, events: list[bytes]) -> list[ParsedResponse]:
        # One decoder call for the whole stream instead of one per event: the events are
        # JSON objects, so joined with commas inside brackets they are one JSON array.
        try:
            responses = _decode_many(b"[" + b",".join(events) + b"]")
        except msgspec.MsgspecError:
            responses = []
        if len(responses) != len(events):  # a bad event: find and name it one by one
            return [self.parse_event(data) for data in events]
        return [self._parsed_event(response) for response in responses]

    def _parsed_event(self, response: Response | LenientResponse) -> ParsedResponse:
        if response.error:
            return ParsedResponse(error=error_text(response.error))
        usage = response.usage
        if response.choices:
            choice = response.choices[0]
            content = self.event_text(choice) or None
            reasoning = self.event_reasoning(choice) or None
        else:
            content = reasoning = None
        if usage is None and reasoning is None:
            return NOT_CONTENT if content is None else ParsedResponse(content)
        prompt, completion, reasoning_tokens = usage_counts(usage)
        return ParsedResponse(content, prompt, completion, None, reasoning, reasoning_tokens,
                              usage_total(usage))

    def parse_body(self, body: bytes) -> ParsedResponse:
        response = self._decode(body, "response")
        if response.error:
            return ParsedResponse(error=error_text(response.error))
        if not response.choices:
            raise InvalidResponse(f"{self.kind} response has no choices")
        prompt, completion, reasoning_tokens = usage_counts(response.usage)
        choice = response.choices[0]
        return ParsedResponse(self.body_text(choice) or "", prompt, completion, None,
                              self.body_reasoning(choice) or None, reasoning_tokens,
                              usage_total(response.usage))

    def _decode(self, data: bytes, what: str) -> Response | LenientResponse:
        try:
            return _decode(data)
        except msgspec.MsgspecError:  # a lenient read, or the error that names the fault
            response: LenientResponse = decode_json(data, _decode_lenient,
                                                    f"{self.kind} {what}")
            return response
