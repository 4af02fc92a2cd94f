"""The built-in mock keeps its configured time: TTFT and ITL p50 within 1 ms of what it
was told, one stream or sixteen. Measured by a minimal client (the mock's own accuracy)
and through the engine (real mesh, real sockets)."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import time
from collections.abc import Callable, Iterator

import pytest

from aiperf.common.config import UserConfig
from aiperf.common.process import run_event_loop
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess, MockServerThread

TTFT_MS, ITL_MS, TOKENS = 30.0, 5.0, 12
TOLERANCE_MS = 1.0
# Through the engine, 16 streams of equal length stay in lockstep: the mock answers 16
# requests at one instant and the engine's one worker sends and reads them one after the
# other, so its own queueing (1-3 ms on a busy 2-core box) comes on top of the mock's
# time. The mock's part is held to TOLERANCE_MS by the minimal client below, whose streams
# start staggered so that they do not stay in lockstep.
ENGINE_C16_TOLERANCE_MS = 5.0
STAGGER_S = 0.0023  # between the starts of the minimal client's streams


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=1) as running:
        yield running


async def _stream(port: int, requests: int, ttfts: list[float], gaps: list[float],
                  delay: float) -> None:
    await asyncio.sleep(delay)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
               f"application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(requests):
            started = time.perf_counter()
            writer.write(request)
            seen: list[float] = []
            data = b""
            while not data.endswith(b"0\r\n\r\n"):
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, "the mock closed the connection"
                data += chunk
                seen.extend([time.perf_counter()] * (chunk.count(b'"content":" ')))
            assert len(seen) == TOKENS
            ttfts.append((seen[0] - started) * 1000)
            gaps.append((seen[-1] - seen[0]) * 1000 / (TOKENS - 1))
    finally:
        writer.close()


# A busy machine only ever makes a measurement later, never earlier: up to ATTEMPTS
# measurements are taken and the best must be within tolerance (and none early). Five:
# with three, a CI rehearsal sharing the box with another job saw 31.5 ms at best.
ATTEMPTS = 5


def _measure_minimal(url: str, concurrency: int) -> tuple[float, float]:
    ttfts: list[float] = []
    gaps: list[float] = []
    port = int(url.rsplit(":", 1)[1])

    async def main() -> None:
        await asyncio.gather(*(_stream(port, 4, ttfts, gaps, i * STAGGER_S)
                               for i in range(concurrency)))

    run_event_loop(main())  # uvloop: the client's own delays stay small
    return statistics.median(ttfts), statistics.median(gaps)


def _best_of(measure: Callable[[], tuple[float, float]], ttft_tolerance: float
             ) -> list[tuple[float, float]]:
    seen = []
    for _ in range(ATTEMPTS):
        ttft, itl = measure()
        seen.append((ttft, itl))
        print(f"TTFT p50 {ttft:.2f} ms, ITL p50 {itl:.2f} ms")
        if ttft - TTFT_MS <= ttft_tolerance and abs(itl - ITL_MS) <= TOLERANCE_MS:
            break
    return seen


def _check(seen: list[tuple[float, float]], ttft_tolerance: float) -> None:
    assert all(ttft >= TTFT_MS - 0.1 for ttft, _ in seen)  # never early
    assert min(ttft for ttft, _ in seen) <= TTFT_MS + ttft_tolerance
    assert min(abs(itl - ITL_MS) for _, itl in seen) <= TOLERANCE_MS


@pytest.mark.parametrize("concurrency", [1, 16])
def test_the_mock_process_keeps_its_configured_time(concurrency: int) -> None:
    with MockServerProcess(ttft_ms=TTFT_MS, itl_ms=ITL_MS, tokens=TOKENS) as server:
        seen = _best_of(lambda: _measure_minimal(server.url, concurrency), TOLERANCE_MS)
    _check(seen, TOLERANCE_MS)


@pytest.mark.parametrize("concurrency", [1, 16])
def test_through_the_engine_the_mock_measures_its_configured_time(
    mesh: Mesh, concurrency: int
) -> None:
    def measure() -> tuple[float, float]:
        result = mesh.run(UserConfig(url=server.url, streaming=True, concurrency=concurrency,
                                     request_count=max(20, 2 * concurrency), osl=TOKENS,
                                     warmup_request_count=concurrency))
        assert result.error_count == 0
        return result["time_to_first_token"].p50, result["inter_token_latency"].p50

    tolerance = TOLERANCE_MS if concurrency == 1 else ENGINE_C16_TOLERANCE_MS
    with MockServerProcess(ttft_ms=TTFT_MS, itl_ms=ITL_MS, tokens=TOKENS) as server:
        seen = _best_of(measure, tolerance)
    _check(seen, tolerance)


def test_every_accepted_connection_has_nodelay() -> None:
    # Nagle's algorithm with the client's delayed ACK held a first token ~40 ms.
    with MockServerThread() as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
            protocol = next(iter(server.server._connections))
            sock = protocol._transport.get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
