"""OpenAI Completions: ``prompt`` in; ``choices[0].text`` out."""

from __future__ import annotations

from typing import Any

from aiperf.dataset.models import Turn
from aiperf.endpoints.openai import Choice, OpenAITokenEndpoint


class CompletionsEndpoint(OpenAITokenEndpoint):
    max_tokens_field = "max_tokens"
    kind = "completions"

    def prompt_fields(self, turn: Turn) -> dict[str, Any]:
        return {"prompt": turn.text}

    def event_text(self, choice: Choice) -> str | None:
        return choice.text

    def body_text(self, choice: Choice) -> str | None:
        return choice.text
