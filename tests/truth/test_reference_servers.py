"""The reference servers keep their schedule: measured with a bare aiohttp client, each case's
times land on its truth. If one of these fails, the server (or the box) is at fault and the
engine's failures in the other modules say nothing; if these pass, those point at the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import psutil
import pytest

from tests.harness.processes import wait_gone
from tests.harness.reference_servers import Behaviour, ReferenceServer, ServerStats
from tests.truth.cases import (
    CASES,
    CONCURRENCIES,
    EARLY_MS,
    LIGHT_REQUESTS,
    REQUEST_TIMEOUT_S,
    TOLERANCE,
    Case,
    Time,
)
from tests.truth.compare import (
    SERVER_LATE_MS,
    failure_message,
    measure_until_the_box_keeps_time,
)
from tests.truth.conftest import ServerPool

REPO_ROOT = Path(__file__).resolve().parents[2]
PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions",
         "embeddings": "/v1/embeddings"}


@dataclass
class Exchange:
    """One request as a bare client saw it (ms from just before the request was written)."""

    waiting_ms: float = 0.0
    latency_ms: float = 0.0
    content_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    body: bytes = b""


def _content_kind(event: bytes) -> str | None:
    """'reasoning' or 'answer' for a content event, None for anything else."""
    if not event.startswith(b"data: {"):
        return None
    choices = json.loads(event[6:]).get("choices") or []
    if not choices:
        return None
    delta = choices[0].get("delta") or {}
    if choices[0].get("text") or delta.get("content"):
        return "answer"
    if delta.get("reasoning_content") or delta.get("reasoning"):
        return "reasoning"
    return None


async def _exchange(session: aiohttp.ClientSession, url: str, case: Case) -> Exchange:
    body = {"model": "ref", "stream": case.streaming, "messages": [{"role": "user",
                                                                    "content": "hi"}]}
    seen = Exchange()
    stamps: dict[str, int] = {}
    async with session.post(url + PATHS[case.endpoint], json=body,
                            trace_request_ctx=stamps) as response:
        start = stamps["start"]
        seen.waiting_ms = (time.perf_counter_ns() - start) / 1e6
        buffer = b""
        async for data in response.content.iter_any():
            now = (time.perf_counter_ns() - start) / 1e6
            seen.latency_ms = now
            if not case.streaming:
                seen.body += data
                continue
            buffer += data
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                kind = _content_kind(event)
                if kind is not None:
                    seen.content_ms.append(now)
                if kind == "answer":
                    seen.answer_ms.append(now)
    return seen


def _connection_in_hand() -> aiohttp.TraceConfig:
    """Request start as the engine defines it: the connection is in hand (pool wait and
    connection set-up excluded), the request about to be written."""

    async def mark(session: object, context: SimpleNamespace, params: object) -> None:
        context.trace_request_ctx["start"] = time.perf_counter_ns()

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(mark)
    trace.on_connection_reuseconn.append(mark)
    return trace


async def _measure(url: str, case: Case, concurrency: int) -> list[Exchange]:
    queue = list(range(LIGHT_REQUESTS[concurrency]))
    seen: list[Exchange] = []
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    # A server that closes every connection: a bare client that pooled them would resend on
    # a dead one; this one does not pool.
    connector = aiohttp.TCPConnector(force_close=case.behaviour.close_after_response)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector,
                                     trace_configs=[_connection_in_hand()]) as session:

        async def slot() -> None:
            while queue:
                queue.pop()
                seen.append(await _exchange(session, url, case))

        await asyncio.gather(*(slot() for _ in range(concurrency)))
    return seen


def _check(name: str, expected: Time, values: list[float], concurrency: int) -> list[str]:
    tolerance = TOLERANCE[concurrency].of(expected.ms)
    median = statistics.median(values)
    problems = []
    if abs(median - expected.ms) > tolerance:
        problems.append(f"{name}: median {median:.3f} ms, truth {expected.ms:.3f} ± "
                        f"{tolerance:.3f}")
    if expected.floor and min(values) < expected.ms - EARLY_MS:
        problems.append(f"{name}: min {min(values):.3f} ms, below the schedule's "
                        f"{expected.ms:.3f}")
    return problems


@pytest.mark.parametrize("concurrency", CONCURRENCIES, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_bare_client_measures_the_schedule(
    reference_servers: ServerPool, case: Case, concurrency: int
) -> None:
    server = reference_servers.get(case.behaviour)

    def measure() -> tuple[list[str], ServerStats]:
        before = server.stats()
        exchanges = asyncio.run(_measure(server.url, case, concurrency))
        seen = server.stats() - before
        assert seen.requests == LIGHT_REQUESTS[concurrency]
        return _compare(case, concurrency, exchanges), seen

    problems, seen, attempts, client_wait = measure_until_the_box_keeps_time(measure)
    assert not problems, failure_message(f"{case.name} at c={concurrency}, attempt {attempts}:",
                                         problems, seen, client_wait)


def _compare(case: Case, concurrency: int, exchanges: list[Exchange]) -> list[str]:
    truth = case.per_request(concurrency)
    measured = {
        "request_latency": [e.latency_ms for e in exchanges],
        "http_req_waiting": [e.waiting_ms for e in exchanges],
    }
    if case.streaming:
        measured["time_to_first_token"] = [e.content_ms[0] for e in exchanges]
        if case.behaviour.answer_tokens:
            measured["time_to_first_output_token"] = [e.answer_ms[0] for e in exchanges]
        measured["inter_chunk_latency"] = [b - a for e in exchanges
                                           for a, b in itertools.pairwise(e.content_ms)]
        for e in exchanges:
            assert len(e.content_ms) == case.behaviour.content_events
    else:
        for e in exchanges:
            json.loads(e.body)  # whole and well-formed
    problems = []
    for name, values in measured.items():
        if name in truth and values:
            expected = truth[name]
            assert isinstance(expected, Time)
            problems += _check(name, expected, values, concurrency)
    return problems


def test_a_server_that_never_answers_notes_how_long_the_client_waited() -> None:
    # The client's 300 ms run from before it connects; the server's clock from when it has
    # read the whole request, after the client wrote it (measured here) and after the server
    # was scheduled to read it (up to SERVER_LATE_MS, a wake-up the suite calls normal): the
    # server's figure is short by those.
    written: list[float] = []

    async def sent(session: object, context: object, params: object) -> None:
        written.append(time.perf_counter())

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(sent)
    trace.on_request_chunk_sent.append(sent)
    with ReferenceServer(Behaviour(never_answer=True)) as server:

        async def give_up_after(seconds: float) -> float:
            async with aiohttp.ClientSession(trace_configs=[trace]) as session:
                began = time.perf_counter()
                with pytest.raises(asyncio.TimeoutError):
                    async with asyncio.timeout(seconds):
                        await session.post(server.url + PATHS["chat"], json={})
            assert written, "the request was never written"
            return (written[-1] - began) * 1000

        before_sent_ms = asyncio.run(give_up_after(0.3))
        deadline = time.monotonic() + 5
        while not server.stats().hangs_ms and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = server.stats()
    assert stats.requests == 1 and len(stats.hangs_ms) == 1
    lowest = 300 - before_sent_ms - SERVER_LATE_MS - EARLY_MS
    assert lowest <= stats.hangs_ms[0] < 300 + 100, (stats, before_sent_ms)


def test_a_behaviour_never_mixes_reasoning_and_answer_in_one_event() -> None:
    with pytest.raises(ValueError, match="multiples of tokens_per_chunk"):
        Behaviour(reasoning_tokens=3, answer_tokens=4, tokens_per_chunk=2)


def test_a_reference_server_dies_with_its_parent() -> None:
    """A test run killed mid-way leaves no server behind (the parent-death signal)."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import sys, time
            from tests.harness.reference_servers import Behaviour, ReferenceServer, ServerStats
            server = ReferenceServer(Behaviour())
            server.start()
            print(server.pid, flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert parent.stdout is not None
        server_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(server_pid)
    finally:
        parent.kill()
        parent.wait(5)
    assert wait_gone([server_pid]) == [], f"reference server {server_pid} outlived its parent"
