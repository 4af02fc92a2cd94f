"""The HTTP transport: one aiohttp session per worker, bounded pool, ns timestamps per read.

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

import aiohttp

from aiperf.common.codec import ErrorInfo, RawRecord

_perf_ns = time.perf_counter_ns
DONE = b"[DONE]"
MAX_ERROR_BODY = 2000
STALE_CONNECTION_RETRIES = 1


class HttpTransport:
    def __init__(self, timeout_seconds: float, max_connections: int) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections, limit_per_host=self.max_connections,
            ttl_dns_cache=300, enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
        )

    async def close(self) -> None:
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None

    async def send(
        self, record: RawRecord, url: str, headers: dict[str, str], body: bytes, streaming: bool
    ) -> None:
        assert self._session is not None
        session = self._session
        for attempt in range(STALE_CONNECTION_RETRIES + 1):
            record.wall_start_ns = time.time_ns()
            record.start_ns = _perf_ns()
            try:
                await self._exchange(session, record, url, headers, body, streaming)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                stale = record.response_ns == 0 and not isinstance(
                    exc, aiohttp.ClientConnectorError)  # refused is not stale
                if stale and attempt < STALE_CONNECTION_RETRIES:
                    # The server closed a pooled keep-alive connection before answering
                    # (llama-server does after every streamed response, while advertising
                    # keep-alive): nothing reached it, so send again on a new connection
                    # (not another pooled one: those are likely closed too).
                    session = self._fresh()
                    continue
                record.error = ErrorInfo(None, type(exc).__name__, str(exc) or repr(exc))
            except asyncio.TimeoutError:
                record.error = ErrorInfo(None, "RequestTimeout",
                                         f"no complete response within {self.timeout_seconds}s")
            except aiohttp.ClientResponseError as exc:
                record.error = ErrorInfo(exc.status, type(exc).__name__, exc.message)
            except aiohttp.ClientError as exc:
                record.error = ErrorInfo(None, type(exc).__name__, str(exc) or repr(exc))
            except OSError as exc:
                record.error = ErrorInfo(None, type(exc).__name__, str(exc))
            break
        record.end_ns = _perf_ns()

    def _fresh(self) -> aiohttp.ClientSession:
        """A session that never reuses a connection, for resends."""
        if self._fresh_session is None:
            self._fresh_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=self.timeout_seconds),
                auto_decompress=False, skip_auto_headers=("Accept-Encoding",))
        return self._fresh_session

    async def _exchange(self, session: aiohttp.ClientSession, record: RawRecord, url: str,
                        headers: dict[str, str], body: bytes, streaming: bool) -> None:
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
