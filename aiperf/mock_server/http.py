"""A small HTTP/1.1 server for the mock: httptools parsing on an asyncio protocol.

The mock must cost far less CPU per request than the clients it measures, or it becomes
the bottleneck of the throughput benchmarks (aiohttp's web server spent ~0.1 ms per
request here, as much as the client under test). This layer only parses requests, keeps
them in order per connection and frames responses; what to answer is the handler's
business.

A handler turns a ``Request`` into *steps*, a plain iterator of: ``Reply`` (a whole
response), ``StreamStart`` (status line and headers of a chunked response), ``bytes`` (one
chunk of it), a ``float`` (pause that many seconds), an ``asyncio.Future`` (wait until it
is done: a queued request waiting for its slot), ``END`` (finish the chunked response
early, cleanly) or ``ABORT`` (drop the connection). Steps run synchronously until the first
positive pause (or pending future); only then does the rest move to a task, so an
immediate answer costs no task at all. The steps are closed when the answer ends, however
it ends, so a generator's ``finally`` can release what it holds (a slot).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from aiperf.mock_server.timer import LoopTimer, PauseTimer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamStart:
    content_type: str = "text/event-stream"
    headers: dict[str, str] = field(default_factory=dict)


END = object()
ABORT = object()
Step = Reply | StreamStart | bytes | float | asyncio.Future[None] | object
Handler = Callable[[Request], Iterator[Step]]


# How far behind its deadlines a stream may be and still catch up (see _run_later).
CATCH_UP_S = 0.002


def _head(status: int, headers: dict[str, str], keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", "Server: aiperf-mock"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _close(steps: Iterator[Step]) -> None:
    """Let a generator's ``finally`` run now, not when it is collected."""
    close = getattr(steps, "close", None)
    if close is not None:
        close()


class HttpProtocol(asyncio.Protocol):
    """One connection. Requests are answered one after the other, in arrival order."""

    def __init__(self, handler: Handler, connections: set[HttpProtocol],
                 timer: PauseTimer | None = None) -> None:
        self._handler = handler
        self._connections = connections
        self._timer: PauseTimer = timer or LoopTimer()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._expect_continue = False
        self._answered = False
        self._queue: deque[tuple[Request, bool]] = deque()
        self._task: asyncio.Task[None] | None = None  # an answer still going on
        self._writable: asyncio.Future[None] | None = None
        self._out: list[bytes] = []

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Without it Nagle holds a small chunk until the client's delayed ACK: ~40 ms
            # added to a first token that follows the stream's headers.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._transport = None
        if self._task is not None:
            self._task.cancel()
        self._wake_writer()

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._reply_now(Reply(400, b'{"error":{"message":"malformed HTTP request",'
                                       b'"type":"invalid_request_error","code":400}}'), False)
            self.close()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        # curl asks before sending a body over 1 KiB, and waits a second for no answer.
        if self._expect_continue and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = httptools.parse_url(self._url).path.decode("latin-1")
        request = Request(self._parser.get_method().decode("latin-1"), path,
                          b"".join(self._body))
        self._queue.append((request, self._parser.should_keep_alive()))
        if self._task is None:
            self._next()

    # -- answering ----------------------------------------------------------------------

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _next(self) -> None:
        while self._queue and self._transport is not None:
            request, keep_alive = self._queue.popleft()
            self._answered = False
            try:
                steps = self._handler(request)
                if not self._run_now(steps, keep_alive):
                    return  # a task carries on and calls _next when the answer is done
            except Exception as exc:  # a responder's bug: tell this client; the server goes on
                self._fail(exc)
                return
            if not keep_alive:
                self.close()

    def _run_now(self, steps: Iterator[Step], keep_alive: bool) -> bool:
        """Run steps until a positive pause; False when a task took over the rest."""
        for step in steps:
            if isinstance(step, float):
                if step > 0:
                    self._flush()
                    self._task = asyncio.get_running_loop().create_task(
                        self._run_later(step, steps, keep_alive))
                    return False
            elif isinstance(step, asyncio.Future):
                if not step.done():
                    self._flush()
                    self._task = asyncio.get_running_loop().create_task(
                        self._run_later(step, steps, keep_alive))
                    return False
            elif not self._apply(step, keep_alive):
                break
        self._flush()
        _close(steps)
        return True

    async def _run_later(self, first: float | asyncio.Future[None], steps: Iterator[Step],
                         keep_alive: bool) -> None:
        # Pauses are kept against a running deadline rather than slept one after another,
        # so the time spent writing a chunk does not add up over a stream's tokens.
        try:
            if isinstance(first, float):
                due = time.monotonic() + first
                await self._timer.sleep_until(due)
            else:
                await first
                due = time.monotonic()
            for step in steps:
                if isinstance(step, float):
                    if step > 0:
                        self._flush()
                        # Behind by more than CATCH_UP_S (a slow reader): start over
                        # from now rather than burst the late chunks out back to back.
                        due = max(due + step, time.monotonic() + step - CATCH_UP_S)
                        await self._timer.sleep_until(due)
                elif isinstance(step, asyncio.Future):
                    self._flush()
                    await step
                    due = time.monotonic()
                elif not self._apply(step, keep_alive):
                    break
                elif self._writable is not None:
                    await self._writable
            self._flush()
        except asyncio.CancelledError:
            _close(steps)
            return  # the connection went away
        except Exception as exc:
            _close(steps)
            self._fail(exc)
            return
        _close(steps)
        self._task = None
        if not keep_alive:
            self.close()
        self._next()

    def _apply(self, step: Step, keep_alive: bool) -> bool:
        """Carry out one step; False when the answer is over (or the client is gone)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return False
        self._answered = True
        if isinstance(step, bytes):
            # Chunks due at the same moment leave in one write (one syscall), as the
            # kernel would coalesce them anyway; a pause between chunks flushes.
            self._out.append(b"%x\r\n%b\r\n" % (len(step), step))
        elif isinstance(step, Reply):
            self._reply_now(step, keep_alive)
            return False
        elif isinstance(step, StreamStart):
            headers = {"Content-Type": step.content_type, "Cache-Control": "no-cache",
                       "Transfer-Encoding": "chunked", **step.headers}
            self._out.append(_head(200, headers, keep_alive))
        elif step is END:
            self._out.append(b"0\r\n\r\n")
            return False
        elif step is ABORT:
            self._flush()
            transport.abort()
            return False
        return True

    def _fail(self, exc: Exception) -> None:
        """A 500 naming the error when nothing was sent yet, else a dropped connection."""
        self._out.clear()
        if self._transport is None:
            return
        if self._answered:
            self._transport.abort()
            return
        message = f"mock responder failed: {type(exc).__name__}: {exc}"
        body = b'{"error":{"message":%b,"type":"server_error","code":500}}' % (
            json.dumps(message).encode())
        self._reply_now(Reply(500, body), False)
        self.close()

    def _flush(self) -> None:
        if self._out:
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(b"".join(self._out))
            self._out.clear()

    def _reply_now(self, reply: Reply, keep_alive: bool) -> None:
        if self._transport is None:
            return
        headers = {"Content-Type": reply.content_type,
                   "Content-Length": str(len(reply.body)), **reply.headers}
        self._transport.write(_head(reply.status, headers, keep_alive) + reply.body)

    def _wake_writer(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None
