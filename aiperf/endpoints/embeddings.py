"""OpenAI Embeddings: no streaming, no output tokens; latency is the whole request."""

from __future__ import annotations

from typing import Any

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_of,
    usage_of,
)


class EmbeddingsEndpoint(BaseEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        return {"model": self.config.model, "input": turn.text}

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self.parse_body(data)

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
            raise InvalidResponse("embeddings response has no 'data' list")
        if not all(isinstance(item, dict) and "embedding" in item for item in obj["data"]):
            raise InvalidResponse("embeddings response item without 'embedding'")
        prompt, _ = usage_of(obj)
        return ParsedResponse("", prompt, None)
