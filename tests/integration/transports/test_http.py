"""The HTTP transport over real sockets: its own timeouts, cancellation, headers, and what
it timestamps (request start, phases, the last byte) against servers of known timing. Each
test runs with aiohttp underneath (``HttpTransport``) and with the lean client
(``LeanHttpTransport``): both must keep the same record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from aiperf.common.codec import RawRecord
from aiperf.mock_server import MockServerThread
from aiperf.transports.http import HttpTransport
from aiperf.transports.lean import LeanHttpTransport
from tests.harness.raw_http import read_request

pytestmark = pytest.mark.real_sleep
BODY = b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'
HEADERS = {"Content-Type": "application/json"}
Kind = type[HttpTransport]
KINDS = pytest.mark.parametrize("kind", [HttpTransport, LeanHttpTransport],
                                ids=["aiohttp", "lean"])


def record() -> RawRecord:
    return RawRecord(0, 0, "w", 0, 0, 0, 0, 0, 0, 0, [])


async def stalled_send(kind: type[HttpTransport], url: str, timeout: float
                       ) -> tuple[HttpTransport, RawRecord, asyncio.Task[None]]:
    transport = kind(timeout, 2)
    await transport.start(headers=HEADERS)
    raw = record()
    task = asyncio.create_task(
        transport.send(raw, url + "/v1/chat/completions", HEADERS, BODY, True))
    return transport, raw, task


@KINDS
def test_a_stalled_request_ends_as_a_timeout_error_after_the_timeout(kind: Kind) -> None:
    async def scenario(url: str) -> RawRecord:
        transport, raw, task = await stalled_send(kind, url, 0.3)
        await asyncio.wait_for(task, 5)
        await transport.close()
        return raw

    with MockServerThread(fault="stall", stall_seconds=30) as server:
        raw = asyncio.run(scenario(server.url))
    assert raw.error is not None and raw.error.type == "RequestCancellationError"
    assert raw.error.code == 499 and "request timeout" in raw.error.message
    assert raw.end_ns - raw.start_ns >= 0.3e9
    assert raw.response_ns > 0  # headers came; the stream stalled


@KINDS
def test_cancelling_a_request_is_not_turned_into_a_timeout(kind: Kind) -> None:
    async def scenario(url: str) -> RawRecord:
        transport, raw, task = await stalled_send(kind, url, 10)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await transport.close()
        return raw

    with MockServerThread(fault="stall", stall_seconds=30) as server:
        raw = asyncio.run(scenario(server.url))
    assert raw.error is None


@KINDS
def test_run_headers_go_on_every_request_and_others_are_sent_as_given(kind: Kind) -> None:
    heads: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            heads.append(head.lower())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()

    async def scenario() -> list[RawRecord]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
        transport = kind(5, 2)
        await transport.start(headers={**HEADERS, "X-Run": "one"})
        records = [record(), record()]
        await transport.send(records[0], url, {**HEADERS, "X-Run": "one"}, b"{}", False)
        await transport.send(records[1], url, {**HEADERS, "X-Run": "one", "X-More": "2"},
                             b"{}", False)
        await transport.close()
        server.close()
        return records

    records = asyncio.run(scenario())
    assert [r.error for r in records] == [None, None] and [r.status for r in records] == [200, 200]
    assert b"x-run: one" in heads[0] and b"x-more" not in heads[0]
    assert b"x-run: one" in heads[1] and b"x-more: 2" in heads[1]


# -- timing truth against servers written here, whose timings are known by construction ----

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
JSON_BODY = b'{"choices": [{"message": {"content": "hi"}}]}'


def head(length: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        length)


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"


async def send_all(url: str, count: int, transport: HttpTransport, at_once: bool = False,
                   streaming: bool = False) -> list[RawRecord]:
    records = [record() for _ in range(count)]
    sends = [transport.send(r, url, HEADERS, b"{}", streaming) for r in records]
    if at_once:
        await asyncio.gather(*sends)
    else:
        for send in sends:
            await send
    return records


def exchange(handler: Handler, count: int, transport: HttpTransport,
             at_once: bool = False) -> list[RawRecord]:
    """``count`` requests through ``transport`` to a server answering with ``handler``,
    one after the other (or all at once), within 10 s."""
    async def scenario() -> list[RawRecord]:
        server, url = await serve(handler)
        await transport.start(headers=HEADERS)
        try:
            return await asyncio.wait_for(send_all(url, count, transport, at_once), 10)
        finally:
            await transport.close()
            server.close()

    return asyncio.run(scenario())


@KINDS
def test_a_non_streamed_request_ends_when_the_last_byte_of_its_body_arrives(kind: Kind) -> None:
    # Headers at once, the body 200 ms later (a proxy, a large embedding).
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            writer.write(head(len(JSON_BODY)))
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(JSON_BODY)
            await writer.drain()

    for raw in exchange(answer, 2, kind(10, 2)):
        assert raw.error is None and raw.chunks[-1][1] == JSON_BODY
        last_byte_ms = (raw.chunks[-1][0] - raw.start_ns) / 1e6
        assert 195 <= last_byte_ms < 400, last_byte_ms
        assert (raw.response_ns - raw.start_ns) / 1e6 < 100  # headers came first
        assert raw.end_ns >= raw.chunks[-1][0]


@KINDS
def test_phases_show_a_new_connection_then_a_reused_one(kind: Kind) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            await asyncio.sleep(0.05)  # the server thinks: the waiting phase
            writer.write(head(len(JSON_BODY)) + JSON_BODY)
            await writer.drain()

    first, second = exchange(answer, 2, kind(10, 1))
    assert (first.reused, second.reused) == (0, 1)
    assert first.connecting_ns > 0 and second.connecting_ns == 0
    assert first.blocked_ns == second.blocked_ns == 0 and first.dns_ns == 0  # an IP address
    for raw in (first, second):
        assert raw.error is None
        assert raw.start_ns <= raw.sent_ns <= raw.response_ns <= raw.chunks[-1][0]
        assert (raw.response_ns - raw.sent_ns) / 1e6 >= 45     # waiting: the server's 50 ms
        assert (raw.sent_ns - raw.start_ns) / 1e6 < 45          # sending a small body


@KINDS
def test_the_wait_for_a_pooled_connection_is_blocked_time_not_request_time(kind: Kind) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            await asyncio.sleep(0.15)
            writer.write(head(len(JSON_BODY)) + JSON_BODY)
            await writer.drain()

    # One connection for two requests at once.
    records = sorted(exchange(answer, 2, kind(10, 1), at_once=True),
                     key=lambda r: r.blocked_ns)
    assert records[0].blocked_ns == 0
    assert records[1].blocked_ns / 1e6 >= 140            # it waited for the first request
    latency_ms = (records[1].chunks[-1][0] - records[1].start_ns) / 1e6
    assert 145 <= latency_ms < 300, latency_ms           # its own latency excludes the wait


@KINDS
def test_a_resend_after_a_stale_connection_keeps_the_lost_time_in_the_request(kind: Kind) -> None:
    served = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        while await read_request(reader):
            served += 1
            if served == 2:
                # Keep-alive advertised, but the second request on this connection is
                # dropped after 150 ms without an answer: the client must resend.
                await asyncio.sleep(0.15)
                writer.close()
                return
            writer.write(head(len(JSON_BODY)) + JSON_BODY)
            await writer.drain()

    first, resent = exchange(answer, 2, kind(10, 1))
    assert first.error is None and resent.error is None and resent.status == 200
    assert served == 3
    latency_ms = (resent.chunks[-1][0] - resent.start_ns) / 1e6
    assert latency_ms >= 145, latency_ms                  # the dead attempt's 150 ms count
    assert resent.reused == 0 and resent.connecting_ns > 0  # answered on a new connection
    assert resent.blocked_ns / 1e6 >= 145                 # the lost time, as blocked time
    assert resent.start_ns < resent.resend_ns <= resent.sent_ns
    # The phases still add up to the time from the first attempt to the last byte.
    answered = resent.chunks[-1][0] - resent.resend_ns
    total = resent.blocked_ns + resent.dns_ns + resent.connecting_ns + answered
    assert abs(total - (resent.chunks[-1][0] - resent.start_ns)) < 1e6


@KINDS
def test_a_server_that_never_answers_fails_at_the_first_byte_timeout(kind: Kind) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    started = time.monotonic()
    (raw,) = exchange(answer, 1, kind(20, 2, first_byte_timeout_seconds=0.3))
    elapsed = time.monotonic() - started
    assert raw.error is not None
    assert (raw.error.code, raw.error.type) == (499, "RequestCancellationError")
    assert raw.error.message.startswith("first-byte timeout")
    assert 0.3 <= elapsed < 2.0, elapsed


@KINDS
def test_the_first_byte_timeout_spares_a_response_whose_headers_came(kind: Kind) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(head(len(JSON_BODY)))
        await writer.drain()
        await asyncio.sleep(0.6)  # past the first-byte timeout, within the request timeout
        writer.write(JSON_BODY)
        await writer.drain()

    (raw,) = exchange(answer, 1, kind(5, 2, first_byte_timeout_seconds=0.2))
    assert raw.error is None and raw.chunks[-1][1] == JSON_BODY
