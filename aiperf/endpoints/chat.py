"""OpenAI Chat Completions."""

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


class ChatEndpoint(BaseEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": turn.text}],
            "stream": self.streaming,
        }
        if turn.output_length is not None:
            body["max_completion_tokens"] = turn.output_length
        if self.streaming:
            body["stream_options"] = {"include_usage": True}
        return body

    def parse_event(self, data: bytes) -> ParsedResponse:
        obj = decode_json(data)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, dict):
            raise InvalidResponse("chat chunk is not a JSON object")
        prompt, completion = usage_of(obj)
        choices = obj.get("choices") or []
        content = None
        if choices:
            delta = choices[0].get("delta") or {}
            content = delta.get("content") or None
        if content is None and prompt is None and completion is None:
            return NOT_CONTENT
        return ParsedResponse(content, prompt, completion)

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, dict) or not obj.get("choices"):
            raise InvalidResponse("chat response has no choices")
        message = obj["choices"][0].get("message") or {}
        prompt, completion = usage_of(obj)
        return ParsedResponse(message.get("content") or "", prompt, completion)
