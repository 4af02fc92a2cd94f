"""The request and response format of TEI's ``/rerank``.

Request: ``{"query": "...", "texts": ["...", ...], "model": "..."}``.
Response: ``[{"index": 0, "score": 0.98}, ...]``, or ``{"error": "...", "error_type": ...}``.
A dataset entry's text becomes the query (its first sentence-sized piece) and the passages
(the rest, split in ``PASSAGES`` parts), so synthetic and file datasets both work.
"""

from __future__ import annotations

from typing import Any

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_of,
)

PASSAGES = 4
QUERY_WORDS = 8


def split_turn(text: str) -> tuple[str, list[str]]:
    words = text.split()
    query = " ".join(words[:QUERY_WORDS])
    rest = words[QUERY_WORDS:]
    size = max(1, -(-len(rest) // PASSAGES))
    texts = [" ".join(rest[i:i + size]) for i in range(0, len(rest), size)] or [query]
    return query, texts


class RankingsEndpoint(BaseEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        query, texts = split_turn(turn.text)
        return {"model": self.config.model, "query": query, "texts": texts,
                "raw_scores": False}

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body)
        error = error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if not isinstance(obj, list) or not all(
            isinstance(item, dict) and "index" in item and "score" in item for item in obj
        ):
            raise InvalidResponse("rerank response is not a list of {index, score}")
        return ParsedResponse(content="")

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self.parse_body(data)
