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


@functools.lru_cache(maxsize=4096)
def count_tokens(text: str) -> int:
    """The built-in count, remembered: benchmark clients send the same prompts again and
    again, and the mock's CPU per request must stay well under theirs."""
    return _tokenizer.count(text)


def count_message_tokens(messages: list[Any]) -> int:
    """The built-in count of the messages' contents joined by spaces, message by message:
    a multi-turn conversation repeats its earlier messages (a whole conversation is new text
    every turn, a message is not). The same number: no token spans a space."""
    return sum(count_tokens(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")


@dataclass(frozen=True)
class RequestPlan:
    """What the server will do for one request, as the responder read it from the body."""

    stream: bool
    output_tokens: int
    prompt_tokens: int
    include_usage: bool = True
    items: int = 1


_DONE = b"data: [DONE]\n\n"


class Responder:
    """Override ``path``, ``parse`` and the framing methods for another protocol."""

    path: str = "/"
    # What closes a stream after ``last_events``: OpenAI's ``[DONE]``; empty for a protocol
    # whose last event says it is the last (TGI, the Responses API).
    stream_end: bytes = _DONE

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        raise NotImplementedError

    def first_events(self, request_id: str) -> list[bytes]:
        return []

    def token_event(self, request_id: str, text: str) -> bytes:
        raise NotImplementedError

    def nth_token_event(self, request_id: str, index: int, count: int, text: str,
                        plan: RequestPlan) -> bytes:
        """The ``index``-th of a stream's ``count`` token events: ``token_event`` unless the
        protocol frames some differently (reasoning first, a last one that closes)."""
        return self.token_event(request_id, text)

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
        tokens = _max_tokens(body, ("max_completion_tokens", "max_tokens"), default_tokens)
        return _plan(body, tokens, count_message_tokens(messages))

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


# -- rerankers: a score per passage, no tokens generated ------------------------------------


def _texts(value: Any, what: str, key: str | None = None) -> list[str]:
    """A list of passages as strings (``key``: each is an object holding the text there)."""
    if not isinstance(value, list):
        raise BadRequest(f"{what} must be a list")
    texts = []
    for item in value:
        text = item.get(key) if key is not None and isinstance(item, dict) else item
        if not isinstance(text, str):
            raise BadRequest(f"each of {what} must be "
                             + (f"an object with a string '{key}'" if key else "a string"))
        texts.append(text)
    return texts


class _RerankResponder(Responder):
    def query_and_passages(self, body: dict[str, Any]) -> tuple[str, list[str]]:
        raise NotImplementedError

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        query, passages = self.query_and_passages(body)
        return RequestPlan(stream=False, output_tokens=0,
                           prompt_tokens=count_tokens(" ".join([query, *passages])),
                           items=len(passages))

    def scores(self, plan: RequestPlan) -> list[tuple[int, float]]:
        # Known scores, best first, as rerankers sort them.
        return [(i, round(1.0 / (i + 1), 6)) for i in range(plan.items)]


class RankingsResponder(_RerankResponder):
    """Hugging Face TEI ``/rerank``."""

    path = "/rerank"

    def query_and_passages(self, body: dict[str, Any]) -> tuple[str, list[str]]:
        query = body.get("query")
        if not isinstance(query, str):
            raise BadRequest("query must be a string")
        return query, _texts(body.get("texts"), "texts")

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        return _encode([{"index": i, "score": s} for i, s in self.scores(plan)])


class CohereRankingsResponder(_RerankResponder):
    """Cohere ``/v2/rerank``."""

    path = "/v2/rerank"

    def query_and_passages(self, body: dict[str, Any]) -> tuple[str, list[str]]:
        query = body.get("query")
        if not isinstance(query, str):
            raise BadRequest("query must be a string")
        documents = body.get("documents")
        if isinstance(documents, list) and documents and isinstance(documents[0], dict):
            return query, _texts(documents, "documents", "text")
        return query, _texts(documents, "documents")

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        return _encode({"id": request_id,
                        "results": [{"index": i, "relevance_score": s}
                                    for i, s in self.scores(plan)],
                        "meta": {"billed_units": {"search_units": 1}}})


class NIMRankingsResponder(_RerankResponder):
    """NVIDIA NIM ``/v1/ranking``."""

    path = "/v1/ranking"

    def query_and_passages(self, body: dict[str, Any]) -> tuple[str, list[str]]:
        query = body.get("query")
        if not isinstance(query, dict) or not isinstance(query.get("text"), str):
            raise BadRequest("query must be an object with a string 'text'")
        return query["text"], _texts(body.get("passages"), "passages", "text")

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        return _encode({"rankings": [{"index": i, "logit": s} for i, s in self.scores(plan)]})


# -- the OpenAI Responses API ---------------------------------------------------------------


def _input_text(value: Any) -> str:
    """The text of a Responses ``input``: a string, or items whose content is a string or
    a list of ``input_text`` parts."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise BadRequest("input must be a string or a list of items")
    parts: list[str] = []
    for item in value:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return " ".join(parts)


def _event(kind: str, **fields: Any) -> bytes:
    # The Responses API names each event twice: the SSE event line and the "type" field.
    return (b"event: " + kind.encode() + b"\ndata: "
            + _encode({"type": kind, **fields}) + b"\n\n")


@functools.lru_cache(maxsize=64)
def _delta_head(request_id: str) -> bytes:
    event = _event("response.output_text.delta", item_id=f"msg_{request_id}",
                   output_index=0, content_index=0, delta="")
    return event[:-len(b'""}\n\n')]


class ResponsesResponder(Responder):
    """OpenAI Responses ``/v1/responses``: typed events (``response.output_text.delta``),
    no ``[DONE]``; the stream ends with ``response.completed``, which carries the usage.
    The first ``reasoning_tokens`` output tokens are reasoning (``response.reasoning_text
    .delta`` events; exact with one token per chunk)."""

    path = "/v1/responses"
    stream_end = b""

    def __init__(self, reasoning_tokens: int = 0) -> None:
        self.reasoning_tokens = reasoning_tokens

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        prompt = count_tokens(_input_text(body.get("input", "")))
        tokens = _max_tokens(body, ("max_output_tokens",), default_tokens)
        return RequestPlan(stream=bool(body.get("stream")), output_tokens=tokens,
                           prompt_tokens=prompt)

    def _usage(self, prompt: int, completion: int) -> dict[str, Any]:
        return {"input_tokens": prompt, "output_tokens": completion,
                "output_tokens_details": {
                    "reasoning_tokens": min(self.reasoning_tokens, completion)},
                "total_tokens": prompt + completion}

    def _response(self, request_id: str, status: str, **fields: Any) -> dict[str, Any]:
        return {"id": f"resp_{request_id}", "object": "response", "model": "mock-model",
                "status": status, **fields}

    def first_events(self, request_id: str) -> list[bytes]:
        response = self._response(request_id, "in_progress", output=[])
        return [_event("response.created", response=response),
                _event("response.in_progress", response=response)]

    def token_event(self, request_id: str, text: str) -> bytes:
        # All but the text is the same for every delta of a request: framed once.
        return b"".join((_delta_head(request_id), _encode(text), b"}\n\n"))

    def nth_token_event(self, request_id: str, index: int, count: int, text: str,
                        plan: RequestPlan) -> bytes:
        if index < self.reasoning_tokens:
            return _event("response.reasoning_text.delta", item_id=f"rs_{request_id}",
                          output_index=0, content_index=0, delta=text)
        return self.token_event(request_id, text)

    def _output(self, request_id: str, text: str) -> list[dict[str, Any]]:
        words = text.split(" ")  # the text is " w1 w2 ...": words[0] is empty
        cut = 1 + self.reasoning_tokens
        reasoning, answer = " ".join(["", *words[1:cut]]), " ".join(["", *words[cut:]])
        output: list[dict[str, Any]] = []
        if self.reasoning_tokens:
            output.append({"type": "reasoning", "id": f"rs_{request_id}", "summary": [],
                           "content": [{"type": "reasoning_text", "text": reasoning}]})
        output.append({"type": "message", "id": f"msg_{request_id}", "role": "assistant",
                       "status": "completed",
                       "content": [{"type": "output_text", "text": answer,
                                    "annotations": []}]})
        return output

    def last_events(self, request_id: str, prompt: int, completion: int,
                    include_usage: bool) -> list[bytes]:
        text = "".join(token_texts(completion, completion or 1))
        output = self._output(request_id, text)
        answer = output[-1]["content"][0]["text"]
        return [
            _event("response.output_text.done", item_id=f"msg_{request_id}",
                   output_index=0, content_index=0, text=answer),
            _event("response.completed", response=self._response(
                request_id, "completed", output=output, usage=self._usage(prompt, completion))),
        ]

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        return _encode(self._response(request_id, "completed",
                                      output=self._output(request_id, text),
                                      usage=self._usage(plan.prompt_tokens,
                                                        plan.output_tokens)))


# -- Hugging Face TGI ----------------------------------------------------------------------


def _tgi_plan(body: dict[str, Any], default_tokens: int, stream: bool) -> RequestPlan:
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise BadRequest("inputs must be a string")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise BadRequest("parameters must be an object")
    tokens = _max_tokens(parameters, ("max_new_tokens",), default_tokens)
    # include_usage carries TGI's "details" request flag (a whole answer's details).
    return RequestPlan(stream=stream, output_tokens=tokens, prompt_tokens=count_tokens(inputs),
                       include_usage=bool(parameters.get("details")))


class GenerateResponder(Responder):
    """TGI ``/generate``: ``{"generated_text"}``, and ``details`` when asked for."""

    path = "/generate"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        return _tgi_plan(body, default_tokens, stream=False)

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        answer: dict[str, Any] = {"generated_text": text}
        if plan.include_usage:
            answer["details"] = {"finish_reason": "length",
                                 "generated_tokens": plan.output_tokens, "seed": None}
        return _encode(answer)


class GenerateStreamResponder(Responder):
    """TGI ``/generate_stream``: one event per token; the last one also carries the whole
    ``generated_text`` and ``details``, and nothing follows it (no ``[DONE]``)."""

    path = "/generate_stream"
    stream_end = b""

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        return _tgi_plan(body, default_tokens, stream=True)

    def token_event(self, request_id: str, text: str) -> bytes:
        return b"".join((b'data: {"token":{"id":0,"text":', _encode(text),
                         b',"logprob":-0.5,"special":false},"generated_text":null,'
                         b'"details":null}\n\n'))

    def nth_token_event(self, request_id: str, index: int, count: int, text: str,
                        plan: RequestPlan) -> bytes:
        if index < count - 1:
            return self.token_event(request_id, text)
        whole = "".join(token_texts(plan.output_tokens, plan.output_tokens or 1))
        return sse({"token": {"id": 0, "text": text, "logprob": -0.5,
                                              "special": False},
                    "generated_text": whole,
                    "details": {"finish_reason": "length",
                                "generated_tokens": plan.output_tokens,
                                "input_length": plan.prompt_tokens, "seed": None}})


# -- a JSON API no plugin knows: the template endpoint's reference -------------------------


class PlainJSONResponder(Responder):
    """``POST /``: ``{"prompt", "max_tokens"?, "stream"?}`` in; ``{"output": {"text"},
    "usage": {"input_tokens", "output_tokens"}}`` out, or streamed as ``{"output":
    {"text"}}`` events, a ``{"usage"}`` event and ``[DONE]``. No plugin speaks it: it is
    what the template endpoint is measured against."""

    path = "/"

    def parse(self, body: dict[str, Any], default_tokens: int) -> RequestPlan:
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BadRequest("prompt must be a string")
        tokens = _max_tokens(body, ("max_tokens",), default_tokens)
        return RequestPlan(stream=bool(body.get("stream")), output_tokens=tokens,
                           prompt_tokens=count_tokens(prompt))

    def token_event(self, request_id: str, text: str) -> bytes:
        return sse({"output": {"text": text}})

    def last_events(self, request_id: str, prompt: int, completion: int,
                    include_usage: bool) -> list[bytes]:
        return [sse({"usage": {"input_tokens": prompt, "output_tokens": completion}})]

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        return _encode({"id": request_id, "output": {"text": text},
                        "usage": {"input_tokens": plan.prompt_tokens,
                                  "output_tokens": plan.output_tokens}})
