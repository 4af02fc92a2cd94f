"""OpenAI Completions."""

from __future__ import annotations

from typing import Any

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


class CompletionsEndpoint(BaseEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "prompt": turn.text,
            "stream": self.streaming,
        }
        if turn.output_length is not None:
            body["max_tokens"] = turn.output_length
        if self.streaming:
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_event(self, data: bytes) -> ParsedResponse:
        obj = decode_json(data)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, dict):
            raise InvalidResponse("completions chunk is not a JSON object")
        prompt, completion = usage_of(obj)
        choices = obj.get("choices") or []
        content = (choices[0].get("text") or None) if choices else None
        if content is None and prompt is None and completion is None:
            return NOT_CONTENT
        return ParsedResponse(content, prompt, completion)

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, dict) or not obj.get("choices"):
            raise InvalidResponse("completions response has no choices")
        prompt, completion = usage_of(obj)
        return ParsedResponse(obj["choices"][0].get("text") or "", prompt, completion)
