"""OpenAI Chat Completions: ``messages`` in; ``delta.content`` / ``message.content`` out,
and reasoning from ``reasoning_content`` or ``reasoning`` beside them."""

from __future__ import annotations

from typing import Any

from aiperf.dataset.models import Turn
from aiperf.endpoints.openai import Choice, Message, OpenAITokenEndpoint


class ChatEndpoint(OpenAITokenEndpoint):
    max_tokens_field = "max_completion_tokens"
    kind = "chat"

    def prompt_fields(self, turn: Turn) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": turn.text}]}

    def event_text(self, choice: Choice) -> str | None:
        # Role-only opening chunks carry "content": null; those are not tokens.
        delta = choice.delta
        if delta is None:
            return None
        if delta.tool_calls is None:
            return delta.content
        return _with_tool_calls(delta)

    def body_text(self, choice: Choice) -> str | None:
        message = choice.message
        if message is None:
            return None
        if message.tool_calls is None:
            return message.content
        return _with_tool_calls(message)

    def event_reasoning(self, choice: Choice) -> str | None:
        # Inline for the common case (no reasoning): this runs for every streamed event.
        delta = choice.delta
        if delta is None or (delta.reasoning_content is None and delta.reasoning is None):
            return None
        return _reasoning(delta)

    def body_reasoning(self, choice: Choice) -> str | None:
        return _reasoning(choice.message) if choice.message is not None else None


def _reasoning(message: Message) -> str | None:
    for text in (message.reasoning_content, message.reasoning):
        if text and isinstance(text, str):
            return text
    return None


def _with_tool_calls(message: Message) -> str | None:
    """The message's text followed by every tool call's function name and arguments, as
    AIPerf counts them: a tool call is generated output, not reasoning."""
    parts = [message.content] if isinstance(message.content, str) else []
    calls = message.tool_calls
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            parts.extend(v for v in (function.get("name"), function.get("arguments"))
                         if isinstance(v, str))
    return "".join(parts) or None
