"""The HTTP transport: one aiohttp session per worker, bounded pool, ns timestamps per read.

Two things a bare aiohttp loop pays per request are paid here once instead: the headers of
a run become the session's defaults (``start(headers=...)``), so a request sends them
without a merge; and the request timeout is one sweep over the requests in flight every
``SWEEP_S`` (at most a tenth of the timeout), not a timer and a timeout context per request.
Together they cut the transport's CPU per request by about a sixth
(benchmarks/client_throughput.py).

``send`` fills a ``RawRecord``: request start right before the request is written (pool
set-up excluded), response start when headers arrive, one timestamp per network read (the
SSE events in it are parsed later, by a record processor, and share it), request end when
the stream or body is exhausted. Every
failure becomes the record's ``error`` (code, type, message); nothing raises out of ``send``
except cancellation. A request whose pooled connection turns out to be closed before any
response byte arrives is sent once more on a fresh connection (``STALE_CONNECTION_RETRIES``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp

from aiperf.common.codec import ErrorInfo, RawRecord

_perf_ns = time.perf_counter_ns
DONE = b"[DONE]"
MAX_ERROR_BODY = 2000
STALE_CONNECTION_RETRIES = 1
SWEEP_S = 0.05


class HttpTransport:
    def __init__(self, timeout_seconds: float, max_connections: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None
        self._session_headers: Mapping[str, str] | None = None
        self._deadlines: dict[asyncio.Task[object], int] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweep: asyncio.TimerHandle | None = None

    async def start(self, headers: Mapping[str, str] | None = None) -> None:
        """Open the session. ``headers`` (a run's) go on every request; ``send`` given that
        same mapping adds nothing per request, given another sends it on top of them, so a
        caller with new headers for good (a new API key) opens a new transport instead."""
        self._session_headers = headers or None
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=self.max_connections,
            ttl_dns_cache=300, enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._session_headers,
            timeout=aiohttp.ClientTimeout(total=None),  # ours: see _sweep_expired
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None

    async def send(
        self, record: RawRecord, url: str, headers: dict[str, str], body: bytes, streaming: bool
    ) -> None:
        assert self._session is not None
        session = self._session
        # The caller's own mapping from ``start``: nothing to send per request (no compare).
        request_headers = None if headers is self._session_headers else headers
        task = asyncio.current_task()
        assert task is not None
        self._deadlines[task] = _perf_ns() + int(self.timeout_seconds * 1e9)
        if self._sweep is None:
            self._schedule_sweep()
        try:
            for attempt in range(STALE_CONNECTION_RETRIES + 1):
                record.wall_start_ns = time.time_ns()
                record.start_ns = _perf_ns()
                try:
                    await self._exchange(session, record, url, request_headers, body, streaming)
                except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                    stale = record.response_ns == 0 and not isinstance(
                        exc, aiohttp.ClientConnectorError)  # refused is not stale
                    if stale and attempt < STALE_CONNECTION_RETRIES:
                        # The server closed a pooled keep-alive connection before answering
                        # (llama-server does after every streamed response, while
                        # advertising keep-alive): nothing reached it, so send again on a
                        # new connection (not another pooled one: those are likely closed
                        # too).
                        session = self._fresh()
                        request_headers = headers
                        continue
                    record.error = ErrorInfo(None, type(exc).__name__, str(exc) or repr(exc))
                except aiohttp.ClientResponseError as exc:
                    record.error = ErrorInfo(exc.status, type(exc).__name__, exc.message)
                except aiohttp.ClientError as exc:
                    record.error = ErrorInfo(None, type(exc).__name__, str(exc) or repr(exc))
                except OSError as exc:
                    record.error = ErrorInfo(None, type(exc).__name__, str(exc))
                break
        except asyncio.CancelledError:
            if task not in self._expired:
                raise
            self._expired.discard(task)
            if task.uncancel():
                raise  # cancelled from outside as well: that wins
            record.error = ErrorInfo(None, "RequestTimeout",
                                     f"no complete response within {self.timeout_seconds}s")
        finally:
            self._deadlines.pop(task, None)
            if task in self._expired:
                # Expired, but something on the way absorbed the cancellation: forget it,
                # so it cannot be taken for a timeout of this slot's next request.
                self._expired.discard(task)
                task.uncancel()
        record.end_ns = _perf_ns()

    def _schedule_sweep(self) -> None:
        interval = min(SWEEP_S, self.timeout_seconds / 10)
        self._sweep = asyncio.get_running_loop().call_later(interval, self._sweep_expired)

    def _sweep_expired(self) -> None:
        """Cancel every request past its deadline; ``send`` turns that into a timeout."""
        self._sweep = None
        now = _perf_ns()
        for task, deadline in self._deadlines.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._deadlines:
            self._schedule_sweep()

    def _fresh(self) -> aiohttp.ClientSession:
        """A session that never reuses a connection, for resends."""
        if self._fresh_session is None:
            self._fresh_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=None),  # ours: see _sweep_expired
                auto_decompress=False, skip_auto_headers=("Accept-Encoding",))
        return self._fresh_session

    async def _exchange(self, session: aiohttp.ClientSession, record: RawRecord, url: str,
                        headers: dict[str, str] | None, body: bytes, streaming: bool) -> None:
        async with session.post(url, data=body, headers=headers) as response:
            record.response_ns = _perf_ns()
            record.status = response.status
            if response.status >= 300:
                text = (await response.read())[:MAX_ERROR_BODY].decode("utf-8", "replace")
                record.error = ErrorInfo(response.status, response.reason or "HTTPError",
                                         text or f"HTTP {response.status}")
            elif streaming:
                await self._read_stream(response, record)
            else:
                record.chunks.append((_perf_ns(), await response.read()))

    @staticmethod
    async def _read_stream(response: aiohttp.ClientResponse, record: RawRecord) -> None:
        # One (timestamp, bytes) per network read, undecoded: SSE framing and JSON are the
        # record processor's work, off the request path. Events parsed out of one read
        # share its timestamp either way.
        chunks = record.chunks
        async for data in response.content.iter_any():
            chunks.append((_perf_ns(), data))
