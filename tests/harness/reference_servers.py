"""Reference servers for the truth suite: OpenAI-compatible enough, timings known by construction.

A ``Behaviour`` says what a server does with every POST, as a schedule in milliseconds from
the moment the request's last byte arrived: silence before the status line, then the first
content (an SSE event, or the body's first piece), then the rest at fixed gaps. Whatever a
client measures can then be compared with the schedule, which is the truth.

Each server is a child process (``python tests/harness/reference_servers.py '<JSON>'``, run
as a script so that it imports only pydantic and starts in a fraction of a second) with one
plain asyncio loop, so neither the test interpreter's GIL nor the engine's load shifts its
schedule, and it dies with its parent. Plain asyncio rather than uvloop: libuv rounds
timers to whole milliseconds and may fire them early, asyncio's epoll never wakes early.
Every step is paced against an absolute deadline (``loop.time()``), so one late wake-up
does not push the rest of a stream later. Accepted sockets get TCP_NODELAY: with Nagle's
algorithm a small SSE event can wait for the client's delayed ACK (about 40 ms).

``GET /stats`` answers what the server saw: POST requests, connections that carried one,
how long each never-answered request stayed open before the client gave up, and per
request how late the server's own wake-ups were (``late_ms``: asyncio's epoll waits in whole
milliseconds, so about 0.5-1 ms, more on a starved box) and how long its writes waited for
the client to read (``blocked_ms``: a client that reads slowly holds the schedule back).
While a response is being served, a canary task wakes every ``CANARY_S`` and notes each
wake-up more than ``STALL_S`` late (``stalls_ms``): the box was too busy to run the server
on time, so whatever a client measured then is not a fair test of it.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tests.harness.processes import stop_child

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
STATS_TIMEOUT_S = 5.0
_LARGE_SNDBUF = 4 << 20
CANARY_S = 0.002
STALL_S = 0.002  # epoll rounds a wait up to the next whole ms: less than this is normal
PROMPT_TOKENS = 17  # what every response reports as usage.prompt_tokens
_PR_SET_PDEATHSIG = 1
_PATHS = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
          "/v1/embeddings": "embeddings"}


class Behaviour(BaseModel):
    """What a reference server does with every POST (times in ms after the request arrived).

    Streaming (the request says ``"stream": true``): status line and headers at
    ``headers_after_ms`` (with a role-only chat event, which is not a token), the first
    content event ``content_after_ms`` later, then one event every ``chunk_gap_ms``, each
    carrying ``tokens_per_chunk`` tokens: the reasoning tokens first, then the answer.
    The usage event and ``[DONE]`` go out in the same write as the last content event.

    Not streaming: status line and headers at ``headers_after_ms``; the body in
    ``body_pieces`` pieces, the first ``content_after_ms`` after the headers and the rest
    ``piece_gap_ms`` apart; ``chunked`` frames it with Transfer-Encoding: chunked instead of
    a Content-Length. A token is one word, so the built-in tokenizer counts it as one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    headers_after_ms: float = Field(default=0.0, ge=0)
    content_after_ms: float = Field(default=0.0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)
    answer_tokens: int = Field(default=8, ge=0)
    tokens_per_chunk: int = Field(default=1, ge=1)
    chunk_gap_ms: float = Field(default=0.0, ge=0)
    reasoning_field: Literal["reasoning_content", "reasoning"] = "reasoning_content"
    usage: bool = True
    # The server's own usage numbers (prompt, completion, total) instead of the true ones:
    # a truth test of the usage_* metrics sets counts no client could compute itself.
    usage_numbers: tuple[int, int, int] | None = None
    reasoning_details: bool = Field(
        default=True, description="usage.completion_tokens_details.reasoning_tokens")
    body_pieces: int = Field(default=1, ge=1)
    piece_gap_ms: float = Field(default=0.0, ge=0)
    chunked: bool = False
    embedding_bytes: int = Field(default=0, ge=0, description="pad an embeddings body to this")
    close_after_response: bool = Field(
        default=False, description="close the connection after each response while "
        "advertising keep-alive, as llama-server does")
    never_answer: bool = Field(default=False, description="read the request, answer nothing")

    @model_validator(mode="after")
    def _whole_chunks(self) -> Behaviour:
        if self.reasoning_tokens + self.answer_tokens == 0:
            raise ValueError("a response needs at least one token")
        k = self.tokens_per_chunk
        if self.reasoning_tokens % k or self.answer_tokens % k:
            raise ValueError("reasoning_tokens and answer_tokens must be multiples of "
                             "tokens_per_chunk, so no event mixes the two")
        return self

    @property
    def content_events(self) -> int:
        return (self.reasoning_tokens + self.answer_tokens) // self.tokens_per_chunk


@dataclass
class ServerStats:
    """What a reference server saw, from ``GET /stats``."""

    requests: int
    connections: int
    hangs_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    blocked_ms: list[float] = field(default_factory=list)
    stalls_ms: list[float] = field(default_factory=list)

    def __sub__(self, before: ServerStats) -> ServerStats:
        return ServerStats(self.requests - before.requests,
                           self.connections - before.connections,
                           self.hangs_ms[len(before.hangs_ms):],
                           self.late_ms[len(before.late_ms):],
                           self.blocked_ms[len(before.blocked_ms):],
                           self.stalls_ms[len(before.stalls_ms):])


# Every reference server this process runs: they witness their own timing (``ServerStats``),
# so a witness of the client's (tests/truth/client_box.py) leaves them out.
_RUNNING: set[int] = set()


def running_pids() -> frozenset[int]:
    """The process ids of the reference servers this process has running."""
    return frozenset(_RUNNING)


class ReferenceServer:
    """A reference server as a child process on 127.0.0.1 and a free port."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        self._process = subprocess.Popen(
            [sys.executable, __file__, self.behaviour.model_dump_json(), str(os.getpid())],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        _RUNNING.add(self._process.pid)
        assert self._process.stdout is not None
        os.set_blocking(self._process.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        seen = b""
        while time.monotonic() < deadline and self._process.poll() is None:
            seen += self._process.stdout.read() or b""
            if b"\n" in seen:
                line = seen.split(b"\n", 1)[0]
                if line.startswith(b"listening on "):
                    self.url = line.split()[-1].decode()
                    return self.url
                break
            time.sleep(0.01)
        code = self._process.poll()
        self.stop()
        why = f"exited with code {code}" if code is not None else f"silent for {timeout}s"
        raise RuntimeError(f"reference server did not start ({why}); it printed {seen!r}")

    def stats(self) -> ServerStats:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=STATS_TIMEOUT_S) as reply:
            return ServerStats(**json.loads(reply.read()))

    def stop(self) -> None:
        stop_child(self._process, STOP_TIMEOUT_S)
        if self._process is not None:
            _RUNNING.discard(self._process.pid)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> ReferenceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the server (runs in the child) ----------------------------------------------------------


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


_LAST_CHUNK = b"0\r\n\r\n"
_OBJECT = {"chat": "chat.completion", "completions": "text_completion"}


class _Request:
    __slots__ = ("body", "method", "path")

    def __init__(self, method: str, path: str, body: bytes) -> None:
        self.method, self.path, self.body = method, path, body


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One request (Content-Length bodies only: what HTTP clients send for JSON), or None
    when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return _Request(method, path, body)


class _Timing:
    """One response's deviations from its schedule (s): the latest wake-up, and the time
    its writes waited for the client."""

    __slots__ = ("blocked", "late")

    def __init__(self) -> None:
        self.late = 0.0
        self.blocked = 0.0


class _Server:
    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.requests = 0
        self.connections = 0
        self.hangs_ms: list[float] = []
        self.late_ms: list[float] = []
        self.blocked_ms: list[float] = []
        self.stalls_ms: list[float] = []
        self._serving = 0
        self._canary: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._tail = b"data: [DONE]\n\n"
        self._stream_events = {kind: self._content_events(kind) for kind in ("chat",
                                                                             "completions")}
        self._usage_event = _sse({"id": "ref", "object": "chat.completion.chunk",
                                  "choices": [], "usage": self._usage()})
        # Bodies cut into their pieces once: slicing a 4 MB body per request would cost
        # the server more CPU than sending it.
        self._pieces = {kind: self._cut(self._body(kind)) for kind in _PATHS.values()}

    # -- content, built once

    def _tokens(self) -> list[tuple[bool, str]]:
        """(is reasoning, text) per token: one word each, with a leading space."""
        return ([(True, f" think{i}") for i in range(self.b.reasoning_tokens)]
                + [(False, f" word{i}") for i in range(self.b.answer_tokens)])

    def _content_events(self, kind: str) -> list[bytes]:
        tokens = self._tokens()
        k = self.b.tokens_per_chunk
        events = []
        for i in range(0, len(tokens), k):
            group = tokens[i:i + k]
            text = "".join(t for _, t in group)
            if kind == "completions":
                choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": None}
            else:
                key = self.b.reasoning_field if group[0][0] else "content"
                choice = {"index": 0, "delta": {key: text}, "finish_reason": None}
            events.append(_sse({"id": "ref", "object": _OBJECT[kind] + ".chunk", "created": 0,
                                "model": "ref", "choices": [choice]}))
        return events

    def _usage(self) -> dict[str, Any]:
        completion = self.b.reasoning_tokens + self.b.answer_tokens
        usage: dict[str, Any] = {"prompt_tokens": PROMPT_TOKENS,
                                 "completion_tokens": completion,
                                 "total_tokens": PROMPT_TOKENS + completion}
        if self.b.usage_numbers is not None:
            usage.update(zip(("prompt_tokens", "completion_tokens", "total_tokens"),
                             self.b.usage_numbers, strict=True))
        if self.b.reasoning_details:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.b.reasoning_tokens}
        return usage

    def _cut(self, payload: bytes) -> list[bytes]:
        size = math.ceil(len(payload) / self.b.body_pieces)
        return [payload[i:i + size] for i in range(0, len(payload), size)]

    def _body(self, kind: str) -> bytes:
        tokens = self._tokens()
        reasoning = "".join(t for r, t in tokens if r)
        answer = "".join(t for r, t in tokens if not r)
        if kind == "embeddings":
            floats = max(4, self.b.embedding_bytes // 10)
            vector = b"[" + b",".join([b"0.0123456"] * floats) + b"]"
            usage = json.dumps({"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS})
            return (b'{"object":"list","model":"ref","data":[{"object":"embedding","index":0,'
                    b'"embedding":' + vector + b'}],"usage":' + usage.encode() + b"}")
        if kind == "completions":
            choice: dict[str, Any] = {"index": 0, "text": answer, "finish_reason": "stop"}
        else:
            message = {"role": "assistant", "content": answer}
            if reasoning:
                message[self.b.reasoning_field] = reasoning
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
        body: dict[str, Any] = {"id": "ref", "object": _OBJECT[kind], "created": 0, "model": "ref",
                                "choices": [choice]}
        if self.b.usage:
            body["usage"] = self._usage()
        return json.dumps(body, separators=(",", ":")).encode()

    # -- connections

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.b.embedding_bytes:  # a large piece goes to the kernel in one send
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _LARGE_SNDBUF)
        counted = False
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                arrived = self._loop.time()
                if request.method == "GET" and request.path == "/stats":
                    await self._send_json(writer, 200, {
                        "requests": self.requests, "connections": self.connections,
                        "hangs_ms": self.hangs_ms, "late_ms": self.late_ms,
                        "blocked_ms": self.blocked_ms, "stalls_ms": self.stalls_ms})
                    continue
                kind = _PATHS.get(request.path)
                if request.method != "POST" or kind is None:
                    await self._send_json(writer, 404, {"error": {"message": "no such route"}})
                    continue
                self.requests += 1
                if not counted:
                    self.connections += 1
                    counted = True
                if self.b.never_answer:
                    await self._hang(reader, arrived)
                    return
                body = json.loads(request.body or b"{}")
                timing = _Timing()
                self._serving += 1
                if self._canary is None:
                    self._canary = asyncio.create_task(self._watch())
                try:
                    if body.get("stream") and kind != "embeddings":
                        await self._stream(writer, kind, arrived, timing)
                    else:
                        await self._whole(writer, kind, arrived, timing)
                finally:
                    self._serving -= 1
                self.late_ms.append(timing.late * 1000)
                self.blocked_ms.append(timing.blocked * 1000)
                if self.b.close_after_response:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()

    async def _watch(self) -> None:
        """Note how late this loop wakes while anything is being served."""
        try:
            while self._serving:
                asked = self._loop.time() + CANARY_S
                await asyncio.sleep(CANARY_S)
                late = self._loop.time() - asked
                if late > STALL_S:
                    self.stalls_ms.append(late * 1000)
        finally:
            self._canary = None

    async def _until(self, when: float, timing: _Timing) -> None:
        """Sleep until ``when``, noting how late the wake-up was."""
        delay = when - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
            timing.late = max(timing.late, self._loop.time() - when)

    async def _drain(self, writer: asyncio.StreamWriter, timing: _Timing) -> None:
        started = self._loop.time()
        await writer.drain()
        timing.blocked += self._loop.time() - started

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await writer.drain()

    async def _hang(self, reader: asyncio.StreamReader, arrived: float) -> None:
        """Answer nothing; note how long the client kept the request open."""
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.hangs_ms.append((self._loop.time() - arrived) * 1000)

    async def _stream(self, writer: asyncio.StreamWriter, kind: str, arrived: float,
                      timing: _Timing) -> None:
        b = self.b
        await self._until(arrived + b.headers_after_ms / 1000, timing)
        pending = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        if kind == "chat":
            pending += _http_chunk(_sse({"id": "ref", "object": "chat.completion.chunk",
                                         "choices": [{"index": 0, "delta": {
                                             "role": "assistant", "content": None}}]}))
        events = self._stream_events[kind]
        first = arrived + (b.headers_after_ms + b.content_after_ms) / 1000
        last = len(events) - 1
        for i, event in enumerate(events):
            when = first + i * b.chunk_gap_ms / 1000
            if pending and when > self._loop.time():
                writer.write(pending)  # the headers go out now, not with the first token
                pending = b""
            await self._until(when, timing)
            if i == last:
                event += (self._usage_event if b.usage else b"") + self._tail
            writer.write(pending + _http_chunk(event) + (_LAST_CHUNK if i == last else b""))
            pending = b""
            await self._drain(writer, timing)

    async def _whole(self, writer: asyncio.StreamWriter, kind: str, arrived: float,
                     timing: _Timing) -> None:
        b = self.b
        pieces = self._pieces[kind]
        await self._until(arrived + b.headers_after_ms / 1000, timing)
        framing = (b"Transfer-Encoding: chunked" if b.chunked
                   else f"Content-Length: {sum(map(len, pieces))}".encode())
        pending = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + b"\r\n\r\n"
        first = arrived + (b.headers_after_ms + b.content_after_ms) / 1000
        last = len(pieces) - 1
        for i, piece in enumerate(pieces):
            when = first + i * b.piece_gap_ms / 1000
            if pending and when > self._loop.time():
                writer.write(pending)
                pending = b""
            await self._until(when, timing)
            if b.chunked:
                piece = _http_chunk(piece) + (_LAST_CHUNK if i == last else b"")
            writer.write(pending + piece)
            pending = b""
            await self._drain(writer, timing)


async def _serve(behaviour: Behaviour) -> None:
    server = _Server(behaviour)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, backlog=1024)
    port = listener.sockets[0].getsockname()[1]
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it died already."""
    if sys.platform.startswith("linux"):
        from aiperf.common.process import libc

        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _main(argv: list[str]) -> None:
    _die_with_parent(int(argv[2]))
    asyncio.run(_serve(Behaviour.model_validate_json(argv[1])))


if __name__ == "__main__":
    _main(sys.argv)
