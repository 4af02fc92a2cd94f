"""OpenAI Embeddings: no streaming, no output tokens; latency is the whole request.

A response is decoded into a typed struct whose vectors stay undecoded (``msgspec.Raw``):
only their presence matters here, and building Python floats for a 4 MB body would cost
the record processor about four times as much CPU as checking it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_text,
    usage_counts,
)

_MISSING = msgspec.Raw(b"")


class _Item(msgspec.Struct):
    embedding: msgspec.Raw = _MISSING


class _Response(msgspec.Struct):
    data: list[_Item] | None = None
    usage: Any = None
    error: Any = None


_decode = msgspec.json.Decoder(_Response).decode


class EmbeddingsEndpoint(BaseEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        return {"model": self.config.model, "input": turn.text}

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self.parse_body(data)

    def parse_body(self, body: bytes) -> ParsedResponse:
        response: _Response = decode_json(body, _decode, "embeddings response")
        error = error_text(response.error)
        if error is not None:
            return ParsedResponse(error=error)
        if response.data is None:
            raise InvalidResponse("embeddings response has no 'data' list")
        if any(item.embedding is _MISSING for item in response.data):
            raise InvalidResponse("embeddings response item without 'embedding'")
        prompt, _, _ = usage_counts(response.usage)
        return ParsedResponse("", prompt, None)
