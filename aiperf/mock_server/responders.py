"""What the mock server says: one responder per protocol path.

A responder turns a request body into a list of response *parts* (the text of each token
chunk) and knows how to frame them (an SSE event, or a whole JSON body). The server owns
timing and faults, so a responder for a new protocol gets the latency model and every fault
mode for free. Register one with ``MockServer.add_responder``.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from aiperf.dataset.tokenizer import BuiltinTokenizer

_tokenizer = BuiltinTokenizer()
_encode = msgspec.json.encode


@functools.lru_cache(maxsize=256)
def count_tokens(text: str) -> int:
    """The built-in count, remembered: benchmark clients send the same prompts again and
    again, and the mock's CPU per request must stay well under theirs."""
    return _tokenizer.count(text)
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@dataclass(frozen=True)
class RequestPlan:
    """What the server will do for one request, as the responder read it from the body."""

    stream: bool
    output_tokens: int
    prompt_tokens: int
    include_usage: bool = True
    items: int = 1


class Responder:
    """Override ``path``, ``parse`` and the framing methods for another protocol."""

    path: str = "/"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        raise NotImplementedError

    def first_events(self, request_id: str) -> list[bytes]:
        return []

    def token_event(self, request_id: str, text: str) -> bytes:
        raise NotImplementedError

    def last_events(self, request_id: str, prompt: int, completion: int,
                    include_usage: bool) -> list[bytes]:
        return []

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        raise NotImplementedError


class BadRequest(ValueError):
    """What the client asked for cannot be served: a 400, not a responder failure."""


def sse(obj: Any) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _plan(body: dict[str, Any], tokens: int, prompt: int) -> RequestPlan:
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise BadRequest("stream_options must be an object")
    return RequestPlan(stream=bool(body.get("stream")), output_tokens=tokens,
                       prompt_tokens=prompt, include_usage=bool(options.get("include_usage")))


MAX_OUTPUT_TOKENS = 131_072  # a long context's worth; more is refused, not generated


def _max_tokens(body: dict[str, Any], keys: tuple[str, ...], default: int) -> int:
    for key in keys:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if value > MAX_OUTPUT_TOKENS:
                # A real server refuses more than its context; generating it would hold
                # the mock's memory and loop for as long as the client cares to ask.
                raise BadRequest(f"{key}={value} is above the mock's limit of "
                                 f"{MAX_OUTPUT_TOKENS} tokens")
            return value
    return default


@functools.lru_cache(maxsize=64)
def _chunk_head(request_id: str, created: int) -> bytes:
    head = _encode({"id": request_id, "object": "chat.completion.chunk", "created": created,
                    "model": "mock-model"})
    return b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'


class ChatResponder(Responder):
    path = "/v1/chat/completions"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise BadRequest("messages must be a list")
        text = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        tokens = _max_tokens(body, ("max_completion_tokens", "max_tokens"), default_tokens)
        return _plan(body, tokens, count_tokens(text))

    def _chunk(self, request_id: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
        # What precedes the delta is the same for every chunk of a request: encoded once.
        return b"".join((_chunk_head(request_id, int(time.time())), _encode(delta),
                         b',"finish_reason":', _encode(finish), b"}]}\n\n"))

    def first_events(self, request_id: str) -> list[bytes]:
        # Like llama.cpp and vLLM: a role-only opening chunk whose content is null.
        return [self._chunk(request_id, {"role": "assistant", "content": None})]

    def token_event(self, request_id: str, text: str) -> bytes:
        return self._chunk(request_id, {"content": text})

    def last_events(self, request_id: str, prompt: int, completion: int,
                    include_usage: bool) -> list[bytes]:
        events = [self._chunk(request_id, {}, finish="length")]
        if include_usage:
            events.append(sse({"id": request_id, "object": "chat.completion.chunk",
                               "model": "mock-model", "choices": [],
                               "usage": _usage(prompt, completion)}))
        return events

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        prompt, completion = plan.prompt_tokens, plan.output_tokens
        return _encode({
            "id": request_id, "object": "chat.completion", "model": "mock-model",
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": text}}],
            "usage": _usage(prompt, completion),
        })


class CompletionsResponder(Responder):
    path = "/v1/completions"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str | list):
            raise BadRequest("prompt must be a string or a list")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        tokens = _max_tokens(body, ("max_tokens",), default_tokens)
        return _plan(body, tokens, count_tokens(text))

    def token_event(self, request_id: str, text: str) -> bytes:
        return sse({"id": request_id, "object": "text_completion", "model": "mock-model",
                    "choices": [{"index": 0, "text": text, "finish_reason": None}]})

    def last_events(self, request_id: str, prompt: int, completion: int,
                    include_usage: bool) -> list[bytes]:
        # Like llama.cpp: usage rides on the last chunk that still has a choice.
        last: dict[str, Any] = {"id": request_id, "object": "text_completion",
                                "model": "mock-model",
                                "choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
        if include_usage:
            last["usage"] = _usage(prompt, completion)
        return [sse(last)]

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        prompt, completion = plan.prompt_tokens, plan.output_tokens
        return _encode({
            "id": request_id, "object": "text_completion", "model": "mock-model",
            "choices": [{"index": 0, "text": text, "finish_reason": "length"}],
            "usage": _usage(prompt, completion),
        })


class EmbeddingsResponder(Responder):
    path = "/v1/embeddings"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        inputs = body.get("input", "")
        items = inputs if isinstance(inputs, list) else [inputs]
        prompt = sum(count_tokens(str(i)) for i in items)
        return RequestPlan(stream=False, output_tokens=0, prompt_tokens=prompt,
                           items=len(items))

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        prompt = plan.prompt_tokens
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}
                for i in range(plan.items)]
        return _encode({"object": "list", "data": data, "model": "mock-model",
                           "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})


@functools.lru_cache(maxsize=64)
def token_texts(count: int, per_chunk: int) -> tuple[str, ...]:
    """The text of each chunk: ``count`` words, ``per_chunk`` to a chunk (cached: every
    request of a run asks for the same)."""
    words = [f" {WORDS[i % len(WORDS)]}" for i in range(count)]
    return tuple("".join(words[i:i + per_chunk]) for i in range(0, count, per_chunk))
