"""The mock server: aiohttp, 127.0.0.1 by default, latency model and faults per request.

Start it in-process (``await MockServer(config).start()``), on a thread of the test process
(``MockServerThread``), or as a child process (``MockServerProcess``, what benchmarks use so
the server does not share the client's interpreter). ``aiperf mock-server`` runs it from the
shell.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from aiohttp import web

from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.responders import (
    ChatResponder,
    CompletionsResponder,
    EmbeddingsResponder,
    RequestPlan,
    Responder,
    token_texts,
)

_DONE = b"data: [DONE]\n\n"


class MockServer:
    """Serves the OpenAI routes, plus any ``responders`` given (a route of the same path
    replaces the built-in one)."""

    def __init__(self, config: MockServerConfig | None = None,
                 responders: list[Responder] | None = None) -> None:
        self.config = config or MockServerConfig()
        self.responders: dict[str, Responder] = {}
        for responder in (ChatResponder(), CompletionsResponder(), EmbeddingsResponder(),
                          *(responders or [])):
            self.add_responder(responder)
        self._rng = random.Random(self.config.seed)
        self._runner: web.AppRunner | None = None
        self.port = self.config.port
        self.requests_served = 0

    def add_responder(self, responder: Responder) -> None:
        self.responders[responder.path] = responder

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/{tail:.*}", self._dispatch)
        return app

    async def start(self) -> str:
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock, backlog=1024)
        await site.start()
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers -------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": "mock-model", "object": "model", "owned_by": "pytest-aiperf"}]})

    def _gauss_s(self, mean_ms: float, stddev_ms: float) -> float:
        if stddev_ms <= 0:
            return mean_ms / 1000
        return max(0.0, self._rng.gauss(mean_ms, stddev_ms)) / 1000

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        responder = self.responders.get(request.path)
        if responder is None:
            return _error(404, f"no mock route for {request.path}", "not_found")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "request body is not JSON", "invalid_request_error")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object", "invalid_request_error")
        self.requests_served += 1
        cfg = self.config
        if cfg.error_rate and self._rng.random() < cfg.error_rate:
            code = self._rng.choice(cfg.error_codes)
            return _error(code, f"injected error {code}", "server_error")
        fault = cfg.fault if cfg.fault != "none" and self._rng.random() < cfg.fault_rate else None
        if fault == "rate_limit":
            return _error(429, "rate limited (injected)", "rate_limit_exceeded",
                          headers={"Retry-After": str(cfg.retry_after_seconds)})
        plan = responder.parse(body, cfg.tokens)
        request_id = f"mock-{uuid.uuid4().hex[:12]}"
        if plan.stream:
            return await self._stream(request, responder, plan, request_id, fault)
        delay = (cfg.latency_ms / 1000 if cfg.latency_ms is not None else
                 self._gauss_s(cfg.ttft_ms, cfg.ttft_stddev_ms)
                 + plan.output_tokens * self._gauss_s(cfg.itl_ms, cfg.itl_stddev_ms))
        if fault == "stall":
            delay = cfg.stall_seconds
        if delay:
            await asyncio.sleep(delay)
        text = "".join(token_texts(plan.output_tokens, plan.output_tokens or 1))
        payload = responder.body(request_id, text, plan)
        if fault == "malformed":
            payload = payload[: len(payload) // 2]
        return web.Response(body=payload, content_type="application/json")

    async def _stream(self, request: web.Request, responder: Responder, plan: RequestPlan,
                      request_id: str, fault: str | None) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        try:
            await self._write_stream(request, response, responder, plan, request_id, fault)
        except ConnectionResetError:
            pass  # the client went away (cancelled, timed out): nothing to answer
        return response

    async def _write_stream(self, request: web.Request, response: web.StreamResponse,
                            responder: Responder, plan: RequestPlan, request_id: str,
                            fault: str | None) -> None:
        cfg = self.config
        for event in responder.first_events(request_id):
            await response.write(event)
        ttft = self._gauss_s(cfg.ttft_ms, cfg.ttft_stddev_ms)
        if ttft:
            await asyncio.sleep(ttft)
        parts = token_texts(plan.output_tokens, cfg.tokens_per_chunk)
        cut = max(1, len(parts) // 2)
        for i, text in enumerate(parts):
            if i and (cfg.itl_ms or cfg.itl_stddev_ms):
                await asyncio.sleep(self._gauss_s(cfg.itl_ms, cfg.itl_stddev_ms)
                                    * cfg.tokens_per_chunk)
            if i == cut and fault is not None:
                if fault == "disconnect":
                    assert request.transport is not None
                    request.transport.abort()
                    return
                if fault == "truncate":
                    await response.write_eof()
                    return
                if fault == "stall":
                    await asyncio.sleep(cfg.stall_seconds)
                if fault == "malformed":
                    await response.write(b'data: {"choices": [{"delta": {"content": "x"\n\n')
                    continue
            await response.write(responder.token_event(request_id, text))
        for event in responder.last_events(request_id, plan.prompt_tokens,
                                           plan.output_tokens, plan.include_usage):
            await response.write(event)
        await response.write(_DONE)
        await response.write_eof()


def _error(code: int, message: str, kind: str,
           headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "code": code}},
                             status=code, headers=headers)


class MockServerThread:
    """The mock server on a background thread with its own event loop (for tests)."""

    def __init__(self, config: MockServerConfig | None = None,
                 responders: list[Responder] | None = None, **overrides: Any) -> None:
        base = config or MockServerConfig()
        self.server = MockServer(base.model_copy(update=overrides) if overrides else base,
                                 responders)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="aiperf-mock-server")

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(10)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> MockServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MockServerProcess:
    """The mock server as a child process; it dies with its parent."""

    def __init__(self, config: MockServerConfig | None = None, **overrides: Any) -> None:
        base = config or MockServerConfig()
        self.config = base.model_copy(update=overrides) if overrides else base
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 15.0) -> str:
        env = dict(os.environ, AIPERF_PARENT_PID=str(os.getpid()))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "aiperf.mock_server", self.config.model_dump_json()],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
        )
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if line.startswith(b"listening on "):
                self.url = line.split()[-1].decode()
                return self.url
            if not line and self._process.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"mock server did not start: {line!r}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def __enter__(self) -> MockServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def serve_forever(config: MockServerConfig) -> None:
    server = MockServer(config)
    url = await server.start()
    print(f"listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
