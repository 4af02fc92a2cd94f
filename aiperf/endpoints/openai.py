"""What the OpenAI-style token endpoints share: the body's frame, usage, errors, choices.

A subclass says only where the prompt goes (``prompt_fields``), what the max-tokens field
is called, and where the text sits in a streamed choice and in a whole one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    NOT_CONTENT,
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_of,
    usage_of,
)


class OpenAITokenEndpoint(BaseEndpoint):
    max_tokens_field: ClassVar[str] = "max_tokens"
    kind: ClassVar[str] = "completions"

    def prompt_fields(self, turn: Turn) -> dict[str, Any]:
        raise NotImplementedError

    def event_text(self, choice: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def body_text(self, choice: dict[str, Any]) -> str:
        raise NotImplementedError

    def payload(self, turn: Turn) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, **self.prompt_fields(turn),
                                "stream": self.streaming}
        if turn.output_length is not None:
            body[self.max_tokens_field] = turn.output_length
        if self.streaming:
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_event(self, data: bytes) -> ParsedResponse:
        obj = self._object(data, "chunk")
        if isinstance(obj, ParsedResponse):
            return obj
        prompt, completion = usage_of(obj)
        choices = obj.get("choices") or []
        content = (self.event_text(choices[0]) or None) if choices else None
        if content is None and prompt is None and completion is None:
            return NOT_CONTENT
        return ParsedResponse(content, prompt, completion)

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = self._object(body, "response")
        if isinstance(obj, ParsedResponse):
            return obj
        if not obj.get("choices"):
            raise InvalidResponse(f"{self.kind} response has no choices")
        prompt, completion = usage_of(obj)
        return ParsedResponse(self.body_text(obj["choices"][0]) or "", prompt, completion)

    def _object(self, data: bytes, what: str) -> dict[str, Any] | ParsedResponse:
        obj = decode_json(data)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, dict):
            raise InvalidResponse(f"{self.kind} {what} is not a JSON object")
        return obj
