"""The phase timing of ``transports/trace.py`` against a resolver and servers whose timing
is known by construction: a lookup that takes 100 ms is DNS time, not connecting time."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from aiperf.common.codec import RawRecord
from aiperf.transports.http import HttpTransport
from aiperf.transports.lean import LeanHttpTransport
from aiperf.transports.trace import PhaseConnector, StampedBody, TimedResolver, current_record

BODY = b'{"ok": true}'
LOOKUP_S = 0.1


def record() -> RawRecord:
    return RawRecord(0, 0, "w", 0, 0, 0, 0, 0, 0, 0, [])


class SlowResolver(AbstractResolver):
    """Every name is 127.0.0.1, after ``LOOKUP_S``."""

    def __init__(self) -> None:
        self.lookups = 0

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookups += 1
        await asyncio.sleep(LOOKUP_S)
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()


async def through_slow_dns(count: int) -> tuple[list[RawRecord], int]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://slow.test:{server.sockets[0].getsockname()[1]}/"
    resolver = SlowResolver()
    connector = PhaseConnector(limit=1, resolver=TimedResolver(resolver))
    records = [record() for _ in range(count)]
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            for raw in records:
                current_record.set(raw)
                async with session.post(url, data=StampedBody(BODY, raw)) as response:
                    assert await response.read() == BODY
    finally:
        server.close()
    return records, resolver.lookups


def test_a_slow_lookup_is_dns_time_and_a_cached_or_reused_one_costs_none() -> None:
    (first, second), lookups = asyncio.run(asyncio.wait_for(through_slow_dns(2), 10))
    assert lookups == 1
    assert LOOKUP_S * 1e9 * 0.95 <= first.dns_ns < LOOKUP_S * 1e9 * 5, first.dns_ns
    assert 0 < first.connecting_ns < LOOKUP_S * 1e9 / 2, first.connecting_ns  # DNS excluded
    assert (first.reused, second.reused) == (0, 1)
    assert second.dns_ns == second.connecting_ns == second.blocked_ns == 0
    for raw in (first, second):
        assert 0 < raw.start_ns <= raw.sent_ns


@pytest.mark.parametrize("kind", [HttpTransport, LeanHttpTransport], ids=["aiohttp", "lean"])
def test_a_name_through_the_transport_is_looked_up_once(kind: type[HttpTransport]) -> None:
    async def scenario() -> list[RawRecord]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://localhost:{server.sockets[0].getsockname()[1]}/"
        transport = kind(10, 1)
        await transport.start()
        records = [record(), record()]
        try:
            for raw in records:
                await transport.send(raw, url, {}, BODY, False)
        finally:
            await transport.close()
            server.close()
        return records

    first, second = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert first.error is None and second.error is None
    assert first.dns_ns > 0 and first.reused == 0 and first.connecting_ns > 0
    assert second.dns_ns == 0 and second.reused == 1


def test_without_a_current_record_the_connector_times_nothing() -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with (aiohttp.ClientSession(connector=PhaseConnector()) as session,
                        session.post(url, data=BODY) as response):
                assert await response.read() == BODY
        finally:
            server.close()

    asyncio.run(asyncio.wait_for(scenario(), 10))
