"""Teaches the mock server to answer ``/rerank``, keeping its latency and fault models."""

from __future__ import annotations

import json
from typing import Any

from aiperf.dataset.tokenizer import BuiltinTokenizer
from pytest_aiperf.kit import RequestPlan, Responder

_tokenizer = BuiltinTokenizer()


class RankingsResponder(Responder):
    path = "/rerank"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        texts = body.get("texts") or []
        prompt = _tokenizer.count(str(body.get("query", ""))) + sum(
            _tokenizer.count(str(t)) for t in texts)
        return RequestPlan(stream=False, output_tokens=0, prompt_tokens=prompt,
                           items=max(1, len(texts)))

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        scores = [{"index": i, "score": round(1.0 / (i + 1), 4)} for i in range(plan.items)]
        return json.dumps(scores).encode()
