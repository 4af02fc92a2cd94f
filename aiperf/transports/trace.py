"""Times a request's connection phases into its ``RawRecord`` from aiohttp's own extension
points, without aiohttp's trace machinery.

aiohttp's ``TraceConfig`` cost the worker 15-25 us of CPU per request (a trace object per
request, a parameter object and an awaited signal per event): non-streaming throughput fell
from 0.87 to 0.72 of the bare client's (benchmarks/client_throughput.py). Here each phase
boundary is a subclass method that aiohttp calls anyway, so a request reused from the pool
costs two clock reads and a context variable lookup:

- ``PhaseConnector.connect``: the connection is in hand (``start_ns``); ``reused`` unless
  ``_create_connection`` ran for this request;
- ``PhaseConnector._wait_for_available_connection``: the pool was full (``blocked_ns``);
- ``PhaseConnector._create_connection``: a new connection (``connecting_ns``, DNS excluded);
- ``TimedResolver.resolve``: a DNS lookup, which aiohttp makes only on a cache miss
  (``dns_ns``; an IP address or a cached name costs none);
- ``StampedBody``, the request body: its write starts (``sent_ns``; headers and a small body
  go out in that one write).

The connector and resolver learn which record is theirs from ``current_record``, set by the
transport in the request's task (a DNS lookup runs in a task aiohttp creates, which copies
the context, so it sees the same record).
"""

from __future__ import annotations

import socket
import time
from contextvars import ContextVar
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.payload import BytesPayload
from aiohttp.resolver import DefaultResolver

from aiperf.common.codec import RawRecord

_perf_ns = time.perf_counter_ns

# The record of the request the current task is sending (see HttpTransport.send).
current_record: ContextVar[RawRecord | None] = ContextVar("current_record", default=None)


class PhaseConnector(aiohttp.TCPConnector):
    """A TCP connector that records the pool wait, connection set-up and reuse of each
    request made while ``current_record`` is set."""

    async def connect(self, req: Any, traces: Any, timeout: Any) -> Any:
        record = current_record.get()
        if record is None:
            return await super().connect(req, traces, timeout)
        record.reused = 1  # _create_connection sets 0 if this request opens one
        connection = await super().connect(req, traces, timeout)
        record.start_ns = _perf_ns()
        return connection

    async def _wait_for_available_connection(self, *args: Any, **kwargs: Any) -> None:
        began = _perf_ns()
        try:
            await super()._wait_for_available_connection(*args, **kwargs)  # type: ignore[misc]
        finally:
            record = current_record.get()
            if record is not None:
                record.blocked_ns += _perf_ns() - began

    async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
        record = current_record.get()
        if record is None:
            return await super()._create_connection(req, traces, timeout)
        record.dns_ns = 0
        began = _perf_ns()
        protocol = await super()._create_connection(req, traces, timeout)
        # aiohttp resolves the host inside connection creation: DNS is its own phase.
        record.connecting_ns = _perf_ns() - began - record.dns_ns
        record.reused = 0
        return protocol


class TimedResolver(AbstractResolver):
    """A resolver (aiohttp's default unless given) timing each lookup into
    ``current_record``."""

    def __init__(self, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver or DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        began = _perf_ns()
        addresses = await self._resolver.resolve(host, port, family)
        record = current_record.get()
        if record is not None:
            record.dns_ns += _perf_ns() - began
        return addresses

    async def close(self) -> None:
        await self._resolver.close()


class StampedBody(BytesPayload):
    """A request body that stamps ``sent_ns`` on its record when aiohttp starts writing it
    (with the buffered headers, for a small body: one write)."""

    def __init__(self, value: bytes, record: RawRecord) -> None:
        super().__init__(value)
        self._record = record

    async def write(self, writer: Any) -> None:  # aiohttp before 3.12
        self._record.sent_ns = _perf_ns()
        await super().write(writer)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        self._record.sent_ns = _perf_ns()
        await super().write_with_length(writer, content_length)
