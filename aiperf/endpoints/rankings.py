"""Rerankers: a query and passages in, a score per passage out; no tokens generated.

Three wire formats of the same request (AIPerf 0.13's three rankings endpoints):

- ``rankings``: Hugging Face TEI ``/rerank``: ``{"query", "texts"}`` in,
  ``[{"index", "score"}, ...]`` out;
- ``cohere-rankings``: Cohere ``/v2/rerank``: ``{"model", "query", "documents"}`` in,
  ``{"results": [{"index", "relevance_score"}, ...]}`` out;
- ``nim-rankings``: NVIDIA NIM ``/v1/ranking``: ``{"model", "query": {"text"}, "passages":
  [{"text"}, ...]}`` in, ``{"rankings": [{"index", "logit"}, ...]}`` out.

The query is the turn's text and the passages its ``extra["passages"]``
(``aiperf.dataset.rankings``), which is taken out of the body rather than merged into it.
Every body carries the model (TEI ignores it; it names the model in logs and proxies). A
response is checked for its protocol's shape, since a reranker that answers something else
has not ranked anything; a usage object, where a server sends one, gives the input tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from aiperf.dataset.models import Turn
from aiperf.dataset.rankings import PASSAGES_KEY, passages_of
from aiperf.endpoints.base import (
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_text,
    usage_counts,
)

_json_encode = msgspec.json.encode


class RankingsEndpoint(BaseEndpoint):
    """Hugging Face TEI ``/rerank``."""

    protocol: ClassVar[str] = "TEI rerank"
    # Where the scored items sit in a response object, and the key each item scores by.
    results_key: ClassVar[str | None] = None  # None: the body is the list itself
    score_key: ClassVar[str] = "score"

    def build(self, query: str, passages: list[str]) -> dict[str, Any]:
        return {"model": self.config.model, "query": query, "texts": passages}

    def payload(self, turn: Turn) -> dict[str, Any]:
        passages = [_passage_text(p) for p in passages_of(turn)]
        return self.build(turn.text, passages)

    def encode(self, turn: Turn) -> bytes:
        # As BaseEndpoint.encode, except that the passages are the request's content, put
        # where the protocol wants them by payload(), not a raw body field.
        body = self.payload(turn)
        body.update(self.config.extra_inputs)
        body.update({k: v for k, v in turn.extra.items() if k != PASSAGES_KEY})
        return _json_encode(body)

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self.parse_body(data)

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body, what=f"{self.protocol} response")
        error = _error_of(obj)
        if error is not None:
            return ParsedResponse(error=error)
        if isinstance(obj, dict):
            # TEI answers a bare list; a TEI-compatible server may wrap it in "results".
            items = obj.get(self.results_key or "results")
        else:
            items = obj if self.results_key is None else None
        if not isinstance(items, list) or not all(
                isinstance(item, dict) and "index" in item and self.score_key in item
                for item in items):
            where = "the body" if self.results_key is None else f"'{self.results_key}'"
            raise InvalidResponse(f"{self.protocol} response: {where} is not a list of "
                                  f"{{index, {self.score_key}}} objects")
        prompt, _, _ = usage_counts(obj.get("usage")) if isinstance(obj, dict) else (
            None, None, None)
        return ParsedResponse("", prompt)


class CohereRankingsEndpoint(RankingsEndpoint):
    """Cohere ``/v2/rerank``."""

    protocol = "Cohere rerank"
    results_key = "results"
    score_key = "relevance_score"

    def build(self, query: str, passages: list[str]) -> dict[str, Any]:
        return {"model": self.config.model, "query": query, "documents": passages}


class NIMRankingsEndpoint(RankingsEndpoint):
    """NVIDIA NIM ``/v1/ranking``."""

    protocol = "NIM ranking"
    results_key = "rankings"
    score_key = "logit"

    def build(self, query: str, passages: list[str]) -> dict[str, Any]:
        return {"model": self.config.model, "query": {"text": query},
                "passages": [{"text": p} for p in passages]}


def _passage_text(passage: Any) -> str:
    """A passage as given: a string, or an object with its ``text`` (NIM's own shape)."""
    if isinstance(passage, str):
        return passage
    if isinstance(passage, dict) and isinstance(passage.get("text"), str):
        return passage["text"]
    raise ValueError(f"a passage must be a string or {{'text': ...}}, got {passage!r:.60}")


def _error_of(obj: Any) -> str | None:
    """The error a reranker reports: ``error`` (TEI, OpenAI-style proxies), ``message``
    alone (Cohere) or ``detail`` (NIM, FastAPI)."""
    if not isinstance(obj, dict):
        return None
    for key in ("error", "detail"):
        text = error_text(obj.get(key))
        if text is not None:
            return text
    if "message" in obj and not any(k in obj for k in ("results", "rankings")):
        return str(obj["message"])
    return None
