"""Hugging Face TGI's native API: ``/generate`` and, streamed, ``/generate_stream``.

In: ``{"inputs": text, "parameters": {"max_new_tokens": n}}``. Out, whole:
``{"generated_text": ...}`` (or a one-item list of it), with ``details.generated_tokens``
when the request asked for details. Streamed: one event per token (``token.text``); the
last event also carries the whole ``generated_text`` and ``details`` (``generated_tokens``,
and ``input_length`` on TGI 2), and nothing follows it: there is no ``[DONE]``. The
whole text on the last event is never counted (it repeats every token).
"""

from __future__ import annotations

from typing import Any

import msgspec

from aiperf.dataset.models import Turn
from aiperf.endpoints.base import (
    NOT_CONTENT,
    BaseEndpoint,
    InvalidResponse,
    ParsedResponse,
    decode_json,
    error_text,
    token_count,
)

STREAM_PATH = "/generate_stream"


class _Token(msgspec.Struct):
    text: Any = None


class _Event(msgspec.Struct):
    token: _Token | None = None
    generated_text: Any = None
    details: Any = None
    error: Any = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_events = msgspec.json.Decoder(list[_Event]).decode


def _counts(details: Any) -> tuple[int | None, int | None]:
    """(input, generated) tokens of TGI's ``details``: the input is ``input_length`` on
    TGI 2, ``prompt_tokens`` on some builds, absent on older ones."""
    if not isinstance(details, dict):
        return None, None
    prompt = details.get("input_length", details.get("prompt_tokens"))
    return token_count(prompt), token_count(details.get("generated_tokens"))


class HuggingFaceGenerateEndpoint(BaseEndpoint):
    @property
    def url(self) -> str:
        # One plugin, two routes: the stream has its own path (AIPerf's streaming_path).
        path = STREAM_PATH if self.streaming else self.metadata.endpoint_path
        return self.config.url.rstrip("/") + path

    def payload(self, turn: Turn) -> dict[str, Any]:
        parameters: dict[str, Any] = {}
        if turn.output_length is not None:
            parameters["max_new_tokens"] = turn.output_length
        return {"model": self.config.model, "inputs": turn.text, "parameters": parameters}

    def parse_event(self, data: bytes) -> ParsedResponse:
        return self._parsed(decode_json(data, _decode_event, "TGI stream event"))

    def parse_events(self, events: list[bytes]) -> list[ParsedResponse]:
        try:
            decoded = _decode_events(b"[" + b",".join(events) + b"]")
        except msgspec.MsgspecError:
            return [self.parse_event(data) for data in events]  # names the bad one
        return [self._parsed(event) for event in decoded]

    def _parsed(self, event: _Event) -> ParsedResponse:
        error = error_text(event.error)
        if error is not None:
            return ParsedResponse(error=error)
        text = event.token.text if event.token is not None else None
        content = text if isinstance(text, str) and text else None
        if event.details is None:
            return NOT_CONTENT if content is None else ParsedResponse(content)
        prompt, completion = _counts(event.details)
        return ParsedResponse(content, prompt, completion)

    def stream_ended(self, last_event: bytes) -> bool:
        """TGI's last event is the one with the whole ``generated_text`` (no ``[DONE]``)."""
        try:
            return _decode_event(last_event).generated_text is not None
        except msgspec.MsgspecError:
            return False

    def parse_body(self, body: bytes) -> ParsedResponse:
        obj = decode_json(body, what="TGI response")
        if isinstance(obj, list) and len(obj) == 1:  # what TGI answers a batched request
            obj = obj[0]
        if not isinstance(obj, dict):
            raise InvalidResponse("TGI response is not a JSON object")
        error = error_text(obj.get("error"))
        if error is not None:
            return ParsedResponse(error=error)
        text = obj.get("generated_text")
        if not isinstance(text, str):
            raise InvalidResponse("TGI response has no 'generated_text' string")
        prompt, completion = _counts(obj.get("details"))
        return ParsedResponse(text, prompt, completion)
