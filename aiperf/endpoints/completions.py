"""OpenAI Completions: ``prompt`` in; ``choices[0].text`` out."""

from __future__ import annotations

from typing import Any

from aiperf.dataset.models import Turn
from aiperf.endpoints.openai import OpenAITokenEndpoint


class CompletionsEndpoint(OpenAITokenEndpoint):
    max_tokens_field = "max_tokens"
    kind = "completions"

    def prompt_fields(self, turn: Turn) -> dict[str, Any]:
        return {"prompt": turn.text}

    def event_text(self, choice: dict[str, Any]) -> str | None:
        return choice.get("text")

    def body_text(self, choice: dict[str, Any]) -> str:
        return choice.get("text") or ""
