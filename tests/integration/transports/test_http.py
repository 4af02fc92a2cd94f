"""The HTTP transport over real sockets: its own request timeout, cancellation, headers."""

from __future__ import annotations

import asyncio

import pytest

from aiperf.common.codec import RawRecord
from aiperf.mock_server import MockServerThread
from aiperf.transports.http import HttpTransport

pytestmark = pytest.mark.real_sleep
BODY = b'{"messages": [{"role": "user", "content": "hi"}], "stream": true}'
HEADERS = {"Content-Type": "application/json"}


def record() -> RawRecord:
    return RawRecord(0, 0, "w", 0, 0, 0, 0, 0, 0, 0, [])


async def stalled_send(url: str, timeout: float
                       ) -> tuple[HttpTransport, RawRecord, asyncio.Task[None]]:
    transport = HttpTransport(timeout, 2)
    await transport.start(headers=HEADERS)
    raw = record()
    task = asyncio.create_task(
        transport.send(raw, url + "/v1/chat/completions", HEADERS, BODY, True))
    return transport, raw, task


def test_a_stalled_request_ends_as_a_timeout_error_after_the_timeout() -> None:
    async def scenario(url: str) -> RawRecord:
        transport, raw, task = await stalled_send(url, 0.3)
        await asyncio.wait_for(task, 5)
        await transport.close()
        return raw

    with MockServerThread(fault="stall", stall_seconds=30) as server:
        raw = asyncio.run(scenario(server.url))
    assert raw.error is not None and raw.error.type == "RequestCancellationError"
    assert raw.error.code == 499 and "request timeout" in raw.error.message
    assert raw.end_ns - raw.start_ns >= 0.3e9
    assert raw.response_ns > 0  # headers came; the stream stalled


def test_cancelling_a_request_is_not_turned_into_a_timeout() -> None:
    async def scenario(url: str) -> RawRecord:
        transport, raw, task = await stalled_send(url, 10)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        await transport.close()
        return raw

    with MockServerThread(fault="stall", stall_seconds=30) as server:
        raw = asyncio.run(scenario(server.url))
    assert raw.error is None


def test_run_headers_go_on_every_request_and_others_are_sent_as_given() -> None:
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
        transport = HttpTransport(5, 2)
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
