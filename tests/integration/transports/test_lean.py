"""What only the lean client does itself (aiohttp did it before): its connection pool's
limit and accounting through failures, chunked bodies over a socket, error bodies, and
connections the server closes after each response."""

from __future__ import annotations

import asyncio
import socket

import pytest

from aiperf.common.codec import RawRecord
from aiperf.transports.lean import LeanHttpTransport
from tests.harness.raw_http import read_request

pytestmark = pytest.mark.real_sleep
HEADERS = {"Content-Type": "application/json"}


def record() -> RawRecord:
    return RawRecord(0, 0, "w", 0, 0, 0, 0, 0, 0, 0, [])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connections_free_their_places_and_the_pool_serves_on() -> None:
    open_connections = 0
    most = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_connections, most
        open_connections += 1
        most = max(most, open_connections)
        while await read_request(reader):
            await asyncio.sleep(0.02)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"1\r\n{\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"1\r\n}\r\n0\r\n\r\n")
            await writer.drain()
        open_connections -= 1

    async def scenario() -> tuple[list[RawRecord], list[RawRecord], int]:
        transport = LeanHttpTransport(10, 2)
        await transport.start(headers=HEADERS)
        refused_url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
        refused = [record() for _ in range(6)]
        await asyncio.gather(*(transport.send(r, refused_url, HEADERS, b"{}", False)
                               for r in refused))
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
        served = [record() for _ in range(6)]
        await asyncio.gather(*(transport.send(r, url, HEADERS, b"{}", False) for r in served))
        count = transport._session.count  # type: ignore[union-attr]
        await transport.close()
        server.close()
        return refused, served, count

    refused, served, count = asyncio.run(asyncio.wait_for(scenario(), 10))
    for raw in refused:
        assert raw.error is not None and raw.error.type == "ClientConnectorError", raw.error
    for raw in served:
        assert raw.error is None and raw.status == 200
        assert b"".join(data for _, data in raw.chunks) == b"{}"
    assert most <= 2 and count == 2  # the limit held; refused attempts hold no place
    assert sum(raw.blocked_ns > 0 for raw in served) >= 4  # six requests, two connections


def test_an_error_status_keeps_its_body_as_the_message_and_a_closing_server_is_followed(
) -> None:
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if await read_request(reader):
            body = b'{"error": "overloaded"}'
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        writer.close()

    async def scenario() -> list[RawRecord]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/chat/completions"
        transport = LeanHttpTransport(10, 1)
        await transport.start(headers=HEADERS)
        records = [record(), record()]
        for raw in records:
            await transport.send(raw, url, HEADERS, b"{}", False)
        await transport.close()
        server.close()
        return records

    records = asyncio.run(asyncio.wait_for(scenario(), 10))
    for raw in records:
        assert raw.error is not None and raw.error.code == 503
        assert raw.error.type == "Service Unavailable" and "overloaded" in raw.error.message
        assert raw.chunks == [] and raw.reused == 0
    assert connections == 2  # Connection: close: a new connection for the second request
