"""A reference chat server for multi-turn sessions: it checks every turn's history.

Each session (the value of its session header) is a conversation the server remembers:
the user messages it was sent and the answers it gave, in order. A request of a session
must carry exactly that history (a system message first is allowed) followed by one new
user message; and no two requests of a session may be in flight at once (on any
connection). A request that breaks either rule is refused with 409 and the reason, and the
reason is kept in ``/stats`` (``violations``). Every answer is new text (a counter in it),
so a client that sent canned or stale answers is caught.

An exchange enters the history once its response was written whole; a response the client
cut off (cancelled) does not, which is also what the client keeps.

Run as a child process (``python -m tests.harness.session_server '<JSON options>' <parent pid>``) on
127.0.0.1 and a free port; it prints ``listening on <url>``. ``GET /stats`` answers
``{"requests", "violations", "sessions": {id: turns answered}, "max_in_flight",
"prompt_messages": [messages per request]}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

from tests.harness.processes import stop_child

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
_PR_SET_PDEATHSIG = 1
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SessionServer:
    """The server as a child process; ``options``: ``header`` (default X-Correlation-ID),
    ``delay_ms`` before each answer, ``answer_tokens``, ``require_session`` (default true;
    false answers a request without the header as a session of its own), ``usage`` (default
    true: the prompt's words and the answer's as token counts)."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    # The module run as the child (a subclass names its own, whose state serves).
    child_module = "tests.harness.session_server"

    def start(self) -> str:
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.child_module, json.dumps(self.options),
             str(os.getpid())],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=_REPO_ROOT)
        assert self._process.stdout is not None
        line = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        os.set_blocking(self._process.stdout.fileno(), False)
        while time.monotonic() < deadline and self._process.poll() is None:
            line += self._process.stdout.read() or b""
            if line.startswith(b"listening on ") and b"\n" in line:
                self.url = line.split()[2].decode()
                return self.url
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.child_module} did not start: {line!r}")

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/stats", timeout=5) as reply:
            return json.loads(reply.read())

    def stop(self) -> None:
        stop_child(self._process, STOP_TIMEOUT_S)

    def __enter__(self) -> SessionServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the server (runs in the child) ----------------------------------------------------------


class _State:
    def __init__(self, options: dict[str, Any]) -> None:
        self.header = options.get("header", "X-Correlation-ID").lower()
        self.delay_s = float(options.get("delay_ms", 0.0)) / 1000
        self.answer_tokens = int(options.get("answer_tokens", 4))
        # False: requests without a session header are single requests, answered.
        self.require_session = bool(options.get("require_session", True))
        self.usage = bool(options.get("usage", True))  # false: no usage in any answer
        self.history: dict[str, list[dict[str, str]]] = {}
        self.in_flight: dict[str, int] = {}
        self.max_in_flight = 0
        self.requests = 0
        self.answers = 0
        self.violations: list[str] = []
        self.prompt_messages: list[int] = []

    def check(self, session: str | None, messages: Any) -> str | None:
        if not session:
            return f"no {self.header} header"
        if not isinstance(messages, list) or not messages:
            return "no messages"
        if messages[0].get("role") == "system":
            messages = messages[1:]
        expected = self.history.get(session, [])
        if messages[:-1] != expected:
            return (f"session {session}: history of {len(messages) - 1} messages does not "
                    f"match the {len(expected)} exchanged")
        if messages[-1].get("role") != "user":
            return f"session {session}: the last message is not the user's"
        if self.in_flight.get(session):
            return f"session {session}: a turn is already in flight"
        return None


async def _read(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


def _reply(status: int, body: bytes, kind: str = "application/json") -> bytes:
    reason = {200: "OK", 404: "Not Found", 409: "Conflict"}.get(status, "Error")
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def _handle(state: _State, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    try:
        while (request := await _read(reader)) is not None:
            method, path, headers, body = request
            if method == "GET" and path == "/stats":
                writer.write(_reply(200, json.dumps({
                    "requests": state.requests, "violations": state.violations,
                    "sessions": {k: len(v) // 2 for k, v in state.history.items()},
                    "max_in_flight": state.max_in_flight,
                    "prompt_messages": state.prompt_messages}).encode()))
                await writer.drain()
                continue
            state.requests += 1
            payload = json.loads(body or b"{}")
            messages = payload.get("messages")
            session = headers.get(state.header)
            state.prompt_messages.append(len(messages) if isinstance(messages, list) else 0)
            if session is None and not state.require_session:
                session = f"single-{state.requests}"
            problem = state.check(session, messages)
            if problem is not None:
                state.violations.append(problem)
                writer.write(_reply(409, json.dumps({"error": {"message": problem}}).encode()))
                await writer.drain()
                continue
            assert session is not None
            state.in_flight[session] = state.in_flight.get(session, 0) + 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight[session])
            try:
                await _answer(state, reader, writer, session, messages,
                              bool(payload.get("stream")))
            finally:
                state.in_flight[session] -= 1
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _answer(state: _State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  session: str, messages: list[dict[str, str]], stream: bool) -> None:
    state.answers += 1
    words = [f"reply{state.answers}"] + ["word"] * (state.answer_tokens - 1)
    if state.delay_s:
        await asyncio.sleep(state.delay_s)
    if reader.at_eof() or reader.exception() is not None:
        return  # the client gave up (cancelled) while it waited: no exchange
    prompt = sum(len(m.get("content", "").split()) for m in messages)
    usage = {"prompt_tokens": prompt, "completion_tokens": len(words),
             "total_tokens": prompt + len(words)}
    text = " ".join(words)
    if stream:
        events = [_sse({"choices": [{"index": 0, "delta": {"content": w if i == 0 else " " + w}}]})
                  for i, w in enumerate(words)]
        if state.usage:
            events.append(_sse({"choices": [], "usage": usage}))
        body = b"".join(events) + b"data: [DONE]\n\n"
        writer.write(_reply(200, body, "text/event-stream"))
    else:
        writer.write(_reply(200, json.dumps({
            "object": "chat.completion", "choices": [{"index": 0, "message": {
                "role": "assistant", "content": text}, "finish_reason": "stop"}],
            **({"usage": usage} if state.usage else {})}).encode()))
    await writer.drain()
    if writer.is_closing():
        return  # cut off: the client keeps no answer, nor does the server
    state.history.setdefault(session, []).extend(
        [messages[-1], {"role": "assistant", "content": text}])


async def _serve(state: _State) -> None:
    listener = await asyncio.start_server(
        lambda r, w: _handle(state, r, w), "127.0.0.1", 0, backlog=1024)
    print(f"listening on http://127.0.0.1:{listener.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()  # connections still open: closed quietly, not as callback errors
    await asyncio.sleep(0)


def main(argv: list[str], state_class: type[_State] = _State) -> None:
    """The child: serve ``state_class(options)`` until SIGTERM, dying with its parent."""
    if sys.platform.startswith("linux"):
        from aiperf.common.process import libc

        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(argv[2]):
        os._exit(1)
    asyncio.run(_serve(state_class(json.loads(argv[1]))))


if __name__ == "__main__":
    main(sys.argv)
