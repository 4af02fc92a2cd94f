"""The mock server: every built-in endpoint's route on 127.0.0.1, latency model and faults.

Start it in-process (``await MockServer(config).start()``), on a thread of the test process
(``MockServerThread``), or as a child process (``MockServerProcess``, what benchmarks use so
the server does not share the client's interpreter). ``aiperf mock-server`` runs it from the
shell. The HTTP layer is ``aiperf.mock_server.http``; this module decides what to answer,
as a sequence of steps (see there).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import pickle
import random
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.http import ABORT, END, HttpProtocol, Reply, Request, Step, StreamStart
from aiperf.mock_server.responders import (
    BadRequest,
    ChatResponder,
    CohereRankingsResponder,
    CompletionsResponder,
    EmbeddingsResponder,
    GenerateResponder,
    GenerateStreamResponder,
    NIMRankingsResponder,
    PlainJSONResponder,
    RankingsResponder,
    RequestPlan,
    Responder,
    ResponsesResponder,
    token_texts,
)
from aiperf.mock_server.slots import Slots
from aiperf.mock_server.timer import PauseTimer, pause_timer

# Every protocol of a built-in endpoint plugin, so each has a server to be measured against.
BUILTIN_RESPONDERS: tuple[type[Responder], ...] = (
    ChatResponder, CompletionsResponder, EmbeddingsResponder, RankingsResponder,
    CohereRankingsResponder, NIMRankingsResponder, ResponsesResponder, GenerateResponder,
    GenerateStreamResponder, PlainJSONResponder)

_HEALTH = msgspec.json.encode({"status": "ok"})
_MODELS = msgspec.json.encode({"object": "list", "data": [
    {"id": "mock-model", "object": "model", "owned_by": "pytest-aiperf"}]})


class MockServer:
    """Serves the OpenAI routes, plus any ``responders`` given (a route of the same path
    replaces the built-in one)."""

    def __init__(self, config: MockServerConfig | None = None,
                 responders: list[Responder] | None = None) -> None:
        self.config = config or MockServerConfig()
        self.responders: dict[str, Responder] = {}
        for responder in (*(cls() for cls in BUILTIN_RESPONDERS), *(responders or [])):
            self.add_responder(responder)
        self._rng = random.Random(self.config.seed)
        self._ttft = self.config.ttft_latency()
        self._whole_latency = self.config.whole_latency()
        self._slots: Slots | None = None
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connections: set[HttpProtocol] = set()
        self._timer: PauseTimer | None = None
        self.port = self.config.port
        self.requests_served = 0
        # What /metrics exposes beside requests_served: answers being made now (a queued
        # request is not one yet) and output tokens sent in answers that reached their end.
        self.in_flight = 0
        self.tokens_generated = 0

    def add_responder(self, responder: Responder) -> None:
        self.responders[responder.path] = responder

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    async def start(self) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.config.host, self.config.port))
        self.port = sock.getsockname()[1]
        loop = asyncio.get_running_loop()
        if self.config.slots is not None:
            self._slots = Slots(self.config.slots)
        self._timer = pause_timer(loop)
        timer = self._timer
        self._server = await loop.create_server(
            lambda: HttpProtocol(self.answer, self._connections, timer), sock=sock,
            backlog=1024)
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                connection.close()
            await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    # -- what to answer ---------------------------------------------------------------

    def answer(self, request: Request) -> Iterator[Step]:
        if request.method == "GET":
            if request.path == "/health":
                return iter((Reply(200, _HEALTH),))
            if request.path == "/v1/models":
                return iter((Reply(200, _MODELS),))
            if request.path == "/metrics":
                return iter((Reply(200, self.metrics_text(), METRICS_CONTENT_TYPE),))
        responder = self.responders.get(request.path)
        if request.method != "POST" or responder is None:
            return iter((_error(404, f"no mock route for {request.method} {request.path}",
                                "not_found"),))
        try:
            body = msgspec.json.decode(request.body)
        except msgspec.DecodeError:
            return iter((_error(400, "request body is not JSON", "invalid_request_error"),))
        if not isinstance(body, dict):
            return iter((_error(400, "request body must be a JSON object",
                                "invalid_request_error"),))
        self.requests_served += 1
        cfg = self.config
        if cfg.error_rate and self._rng.random() < cfg.error_rate:
            code = self._rng.choice(cfg.error_codes)
            return iter((_error(code, f"injected error {code}", "server_error"),))
        fault = cfg.fault if cfg.fault != "none" and self._rng.random() < cfg.fault_rate else None
        if fault == "rate_limit":
            return iter((_error(429, "rate limited (injected)", "rate_limit_exceeded",
                                headers={"Retry-After": str(cfg.retry_after_seconds)}),))
        try:
            plan = responder.parse(body, cfg.tokens)
        except BadRequest as exc:
            return iter((_error(400, str(exc), "invalid_request_error"),))
        request_id = f"mock-{next(self._ids)}"
        steps = (self._stream(responder, plan, request_id, fault) if plan.stream else
                 self._whole(responder, plan, request_id, fault))
        if self._slots is not None:
            return _in_slot(self._slots, steps)
        return steps

    def metrics_text(self) -> bytes:
        """The Prometheus text exposition of ``/metrics`` (``MockMetrics``), so that
        ``server_metrics`` can be tried against the mock."""
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(MockMetrics(self))
        return generate_latest(registry)

    def _gauss_s(self, mean_ms: float, stddev_ms: float) -> float:
        if stddev_ms <= 0:
            return mean_ms / 1000
        return max(0.0, self._rng.gauss(mean_ms, stddev_ms)) / 1000

    def _whole(self, responder: Responder, plan: RequestPlan, request_id: str,
               fault: str | None) -> Iterator[Step]:
        cfg = self.config
        delay = (self._whole_latency.draw_s(self._rng) if self._whole_latency is not None
                 else self._ttft.draw_s(self._rng)
                 + plan.output_tokens * self._gauss_s(cfg.itl_ms, cfg.itl_stddev_ms))
        self.in_flight += 1
        try:  # the HTTP layer closes the steps however the answer ends
            yield float(cfg.stall_seconds if fault == "stall" else delay)
            text = "".join(token_texts(plan.output_tokens, plan.output_tokens or 1))
            payload = responder.body(request_id, text, plan)
            if fault == "malformed":
                payload = payload[: len(payload) // 2]
            else:
                self.tokens_generated += plan.output_tokens
            yield Reply(200, payload)
        finally:
            self.in_flight -= 1

    def _stream(self, responder: Responder, plan: RequestPlan, request_id: str,
                fault: str | None) -> Iterator[Step]:
        self.in_flight += 1
        try:  # the HTTP layer closes the steps however the answer ends
            yield from self._stream_steps(responder, plan, request_id, fault)
        finally:
            self.in_flight -= 1

    def _stream_steps(self, responder: Responder, plan: RequestPlan, request_id: str,
                      fault: str | None) -> Iterator[Step]:
        cfg = self.config
        yield StreamStart()
        yield from responder.first_events(request_id)
        yield self._ttft.draw_s(self._rng)
        parts = token_texts(plan.output_tokens, cfg.tokens_per_chunk)
        cut = max(1, len(parts) // 2)
        pace = cfg.itl_ms or cfg.itl_stddev_ms
        # Most protocols frame every token event alike: the per-index hook only for those
        # that do not (it costs a call per chunk, and the mock's CPU per request counts).
        nth = None if type(responder).nth_token_event is Responder.nth_token_event \
            else responder.nth_token_event
        for i, text in enumerate(parts):
            if i and pace:
                yield self._gauss_s(cfg.itl_ms, cfg.itl_stddev_ms) * cfg.tokens_per_chunk
            if i == cut and fault is not None:
                if fault == "disconnect":
                    yield ABORT
                    return
                if fault == "truncate":
                    yield END
                    return
                if fault == "stall":
                    yield float(cfg.stall_seconds)
                if fault == "malformed":
                    yield b'data: {"choices": [{"delta": {"content": "x"\n\n'
                    continue
            yield (responder.token_event(request_id, text) if nth is None
                   else nth(request_id, i, len(parts), text, plan))
        if fault is None:  # a faulted stream's tokens are not a generated answer's
            self.tokens_generated += plan.output_tokens
        yield from responder.last_events(request_id, plan.prompt_tokens, plan.output_tokens,
                                         plan.include_usage)
        if responder.stream_end:
            yield responder.stream_end
        yield END


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MockMetrics:
    """A prometheus_client collector of one server's counts, read when scraped (nothing is
    done per request beyond the server's own integer counts): ``mock_requests`` (counter,
    exposed as ``mock_requests_total``), ``mock_requests_in_flight`` (gauge) and
    ``mock_generated_tokens`` (counter, ``mock_generated_tokens_total``)."""

    def __init__(self, server: MockServer) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        server = self.server
        yield CounterMetricFamily(
            "mock_requests", "Requests the mock server took to answer (a JSON body on an "
            "API route), injected errors included", value=server.requests_served)
        yield GaugeMetricFamily(
            "mock_requests_in_flight", "Answers being made now (a request waiting for a "
            "slot is not one yet)", value=server.in_flight)
        yield CounterMetricFamily(
            "mock_generated_tokens", "Output tokens of the answers sent whole (a faulted "
            "answer's are not counted)", value=server.tokens_generated)


def _in_slot(slots: Slots, steps: Iterator[Step]) -> Iterator[Step]:
    """``steps`` once a slot is free: the wait comes before the answer's own time. The slot
    is given back when the answer ends, however it ends (the HTTP layer closes steps)."""
    waiting = slots.take()
    try:
        if waiting is not None:
            yield waiting
        yield from steps
    finally:
        # Held unless the request left while still waiting (its future was cancelled).
        if waiting is None or (waiting.done() and not waiting.cancelled()):
            slots.give_back()
        else:
            waiting.cancel()


def _error(code: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Reply:
    body = msgspec.json.encode({"error": {"message": message, "type": kind, "code": code}})
    return Reply(code, body, headers=headers or {})


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
    """The mock server as a child process; it dies with its parent.

    Its own interpreter keeps its timing honest: on a thread of the process that also runs
    the test session, its pauses wait on that process's other work. ``responders`` travel
    to the child pickled, so their classes must be importable there (the child gets this
    process's ``sys.path``)."""

    def __init__(self, config: MockServerConfig | None = None,
                 responders: list[Responder] | None = None, **overrides: Any) -> None:
        base = config or MockServerConfig()
        self.config = base.model_copy(update=overrides) if overrides else base
        self._responders = encode_responders(responders or [])
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def launch(self) -> MockServerProcess:
        """Start the child and return at once; ``wait_url`` waits until it listens."""
        env = dict(os.environ, AIPERF_PARENT_PID=str(os.getpid()),
                   PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "aiperf.mock_server", self.config.model_dump_json(),
             self._responders],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env,
        )
        return self

    def wait_url(self, timeout: float = 15.0) -> str:
        if self.url:
            return self.url
        if self._process is None:
            self.launch()
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        deadline = time.monotonic() + timeout
        said = b"(nothing)"
        # select before each read: a child that hangs before printing must not block us
        # past the deadline (readline alone would wait as long as the child lives).
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([stdout], [], [], left)[0]:
                said = b"(no answer within %.0f s)" % timeout
                break
            line = stdout.readline()
            if line.startswith(b"listening on "):
                self.url = line.split()[-1].decode()
                return self.url
            if not line:  # end of output: the child is gone (or going)
                break
            said = line.strip()
        self.stop()
        raise RuntimeError(f"mock server did not start: {said.decode(errors='replace')!r}")

    def start(self, timeout: float = 15.0) -> str:
        self.launch()
        return self.wait_url(timeout)

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


def encode_responders(responders: list[Responder]) -> str:
    """Responders as one command-line argument (pickled, base64); a clear error when one
    cannot travel to another process."""
    if not responders:
        return ""
    for responder in responders:
        try:
            pickle.dumps(responder)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ValueError(
                f"responder {type(responder).__qualname__} cannot be sent to the mock "
                f"server's process ({exc}); define its class at the top level of an "
                "importable module, and keep its attributes picklable") from None
    return base64.b64encode(pickle.dumps(responders)).decode("ascii")


def decode_responders(text: str) -> list[Responder]:
    if not text:
        return []
    responders = pickle.loads(base64.b64decode(text))
    return list(responders)


async def serve_forever(config: MockServerConfig,
                        responders: list[Responder] | None = None) -> None:
    server = MockServer(config, responders)
    url = await server.start()
    print(f"listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
