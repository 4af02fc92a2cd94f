"""The endpoint plugin interface: turn a dataset entry into a request body, and a response
(one SSE event, or a whole body) into content, usage and errors.

Workers call ``url``, ``headers`` and ``encode`` once per request (the body is cached per
dataset entry); record processors call ``parse_event`` / ``parse_body`` on what workers
recorded, off the request path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.plugin.metadata import EndpointMetadata

_json_decode = msgspec.json.decode
_json_encode = msgspec.json.encode


class ParsedResponse(msgspec.Struct, frozen=True):
    """What one event or body says. ``content`` is the answer text and ``reasoning`` the
    model's reasoning text (``reasoning_content`` / ``reasoning``); both are None for
    non-token events (role-only deltas, usage trailers, empty deltas): those do not count
    for timing. ``completion_tokens`` counts every generated token, reasoning included;
    ``reasoning_tokens`` is the server's count of the reasoning part, when it says, and
    ``total_tokens`` its ``usage.total_tokens`` (reported, never computed here).
    (A msgspec struct: one is built per streamed event, several times cheaper than a frozen
    dataclass.)"""

    content: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None
    reasoning: str | None = None
    reasoning_tokens: int | None = None
    total_tokens: int | None = None


NOT_CONTENT = ParsedResponse()


class InvalidResponse(ValueError):
    """A response event that is not what the protocol promises (e.g. not JSON)."""


def decode_json(data: bytes, decode: Callable[[bytes], Any] = _json_decode,
                what: str = "response") -> Any:
    """``data`` decoded (by ``decode``: a typed msgspec decoder, or plain JSON); anything
    else is an ``InvalidResponse`` that shows the start of ``data``."""
    try:
        return decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidResponse(f"{what} does not match the OpenAI schema: {exc}") from None
    except msgspec.DecodeError as exc:
        preview = data[:80].decode("utf-8", "replace")
        raise InvalidResponse(f"malformed JSON in response: {preview!r}: {exc}") from None


# A count beyond this is not a real one (and would not fit the records' integers).
MAX_TOKEN_COUNT = 1 << 31


def token_count(value: Any) -> int | None:
    """A usage count as a server may send it (``12``, ``"12"``, ``12.0``), or None when it
    is not a plausible count (negative, huge, not a number): usage is advisory, so a bad
    count falls back to the tokenizer instead of failing the request."""
    if (isinstance(value, str) and value.isascii() and value.strip().isdigit()) or (
            isinstance(value, float) and value.is_integer()):
        value = int(value)
    if type(value) is not int:  # bool is not a count either
        return None
    return value if 0 <= value < MAX_TOKEN_COUNT else None


# A count as well-behaved servers send it: a typed decode of these costs a fraction of
# reading an untyped dict in Python. Anything else fails validation, and the response is
# decoded again with ``usage`` untyped for ``usage_counts`` to read leniently.
Count = Annotated[int, msgspec.Meta(ge=0, lt=MAX_TOKEN_COUNT)]


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: Count | None = None


class Usage(msgspec.Struct):
    prompt_tokens: Count | None = None
    completion_tokens: Count | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    total_tokens: Count | None = None


def usage_total(usage: Any) -> int | None:
    """A ``usage`` object's ``total_tokens`` (a typed ``Usage`` or a decoded JSON value),
    None if absent or not a count: the server's own total, which need not be prompt +
    completion (AIPerf's ``usage_total_tokens`` reports it as sent)."""
    if type(usage) is Usage:
        return usage.total_tokens
    return token_count(usage.get("total_tokens")) if isinstance(usage, dict) else None


def usage_counts(usage: Any) -> tuple[int | None, int | None, int | None]:
    """(prompt, completion, reasoning) tokens of a ``usage`` object (a typed ``Usage`` or
    a decoded JSON value), each None if absent or not a count; anything but an object gives
    three Nones."""
    if type(usage) is Usage:
        details = usage.completion_tokens_details
        return (usage.prompt_tokens, usage.completion_tokens,
                None if details is None else details.reasoning_tokens)
    if not isinstance(usage, dict):
        return None, None, None
    details = usage.get("completion_tokens_details")
    reasoning = token_count(details.get("reasoning_tokens")) if isinstance(details, dict) \
        else None
    return (token_count(usage.get("prompt_tokens")), token_count(usage.get("completion_tokens")),
            reasoning)


def usage_of(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens of a decoded response's ``usage`` (for plugins)."""
    prompt, completion, _ = usage_counts(obj.get("usage"))
    return prompt, completion


def error_text(error: Any) -> str | None:
    """The message of a response's ``error`` value (an object's ``message``, or the value
    itself); None when there is none."""
    if not error:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def error_of(obj: Any) -> str | None:
    """The error message of a decoded response object, None if it reports none."""
    return error_text(obj.get("error")) if isinstance(obj, dict) else None


class BaseEndpoint:
    """Subclass and implement ``payload``, ``parse_event`` and ``parse_body``."""

    def __init__(self, config: UserConfig, metadata: EndpointMetadata) -> None:
        self.config = config
        self.metadata = metadata
        self.streaming = config.streaming and metadata.supports_streaming

    @property
    def url(self) -> str:
        return self.config.url.rstrip("/") + self.metadata.endpoint_path

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "pytest-aiperf"}
        if self.streaming:
            headers["Accept"] = "text/event-stream"
        if self.config.api_key is not None:
            headers["Authorization"] = f"Bearer {self.config.api_key.get_secret_value()}"
        headers.update(self.config.headers)
        return headers

    def payload(self, turn: Turn) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, turn: Turn) -> bytes:
        body = self.payload(turn)
        body.update(self.config.extra_inputs)
        body.update(turn.extra)
        return _json_encode(body)

    def parse_event(self, data: bytes) -> ParsedResponse:
        """One SSE ``data:`` payload ([DONE] is filtered out before this is called)."""
        raise NotImplementedError

    def parse_events(self, events: list[bytes]) -> list[ParsedResponse]:
        """Every ``data:`` payload of one stream, in order. Override only for speed; the
        result must equal ``parse_event`` applied to each."""
        return [self.parse_event(data) for data in events]

    def parse_body(self, body: bytes) -> ParsedResponse:
        raise NotImplementedError

    def stream_ended(self, last_event: bytes) -> bool:
        """Whether a stream without OpenAI's ``[DONE]`` ended the way its protocol ends
        one, judged by its last ``data:`` payload (TGI, the Responses API)."""
        return False


def make_endpoint(config: UserConfig) -> BaseEndpoint:
    """The endpoint plugin ``config.endpoint_type`` names, built for ``config``."""
    from aiperf.plugin import PluginType, plugins

    cls = plugins.get_class(PluginType.ENDPOINT, config.endpoint_type)
    metadata = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
    assert isinstance(metadata, EndpointMetadata)
    return cls(config, metadata)
