"""The HTTP transport: one aiohttp session per worker, bounded pool, ns timestamps per read.

Two things a bare aiohttp loop pays per request are paid here once instead: the headers of
a run become the session's defaults (``start(headers=...)``), so a request sends them
without a merge; and the timeouts are one sweep over the requests in flight every
``SWEEP_S`` (at most a tenth of the shortest timeout), not a timer and a timeout context per
request. Together they cut the transport's CPU per request by about a sixth
(benchmarks/client_throughput.py).

What ``send`` records in the ``RawRecord`` (all ``perf_counter_ns``):

- **request start** (``start_ns``): the moment the connection is in hand, immediately
  before the request line is written: after any wait for a free pool connection, DNS
  lookup and TCP connect, which are recorded on their own (``blocked_ns``, ``dns_ns``,
  ``connecting_ns``, and ``reused``) by the connector (``trace.py``). A request
  that fails before it has a connection starts when ``send`` was called.
- ``sent_ns``: aiohttp starts writing the request body (one write for headers
  and a small body; draining a larger one is not seen).
- ``response_ns``: status line and headers received (the first response byte, as far as
  aiohttp lets us see it).
- one ``(timestamp, bytes)`` per network read, streamed or not: the last one is the
  response's last byte, where request latency ends.
- ``end_ns``: after the exchange is over, connection released.

Every failure becomes the record's ``error`` (code, type, message); nothing raises out of
``send`` except a cancellation from outside. The request timeout and the first-byte timeout
(no response headers by then) are errors with AIPerf's cancellation code and type.

A request whose pooled connection turns out to be closed before any response byte arrives
is sent once more on a fresh connection (``STALE_CONNECTION_RETRIES``). The time lost on the
dead connection is never hidden: the record keeps the *first* attempt's start, so request
latency and TTFT include it, and the phases describe the attempt that was answered (a new
connection: ``reused`` 0, its DNS and connect) with the lost time added to ``blocked_ns``
(it was time without a usable connection); ``resend_ns`` marks the answered attempt's
start, where its sending phase begins.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import aiohttp

from aiperf.common.codec import (
    MAX_ERROR_MESSAGE,
    REQUEST_TIMEOUT_REASON,
    ErrorInfo,
    RawRecord,
    cancellation,
)
from aiperf.transports.trace import PhaseConnector, StampedBody, TimedResolver, current_record

_perf_ns = time.perf_counter_ns
DONE = b"[DONE]"
STALE_CONNECTION_RETRIES = 1  # resends after a stale pooled connection: 1 or 0 (off)
SWEEP_S = 0.05
_NO_DEADLINE = 1 << 62


class HttpTransport:
    """One worker's HTTP client. ``trace_phases`` off skips the phase timing (``trace.py``,
    2-4 us of CPU per request): no ``http_req_*`` phases then, and request start falls
    back to when ``send`` was called (pool wait and connect included)."""

    def __init__(self, timeout_seconds: float, max_connections: int,
                 first_byte_timeout_seconds: float | None = None,
                 trace_phases: bool = True) -> None:
        self.timeout_seconds = timeout_seconds
        self.first_byte_timeout_seconds = first_byte_timeout_seconds
        self.max_connections = max_connections
        self.trace_phases = trace_phases
        self._session: aiohttp.ClientSession | None = None
        self._fresh_session: aiohttp.ClientSession | None = None
        self._session_headers: Mapping[str, str] | None = None
        # task -> (request deadline, first-byte deadline, its record)
        self._deadlines: dict[asyncio.Task[object], tuple[int, int, RawRecord]] = {}
        self._expired: dict[asyncio.Task[object], ErrorInfo] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self._resolvers: list[TimedResolver] = []
        shortest = min(timeout_seconds, first_byte_timeout_seconds or timeout_seconds)
        self._sweep_s = min(SWEEP_S, shortest / 10)

    async def start(self, headers: Mapping[str, str] | None = None) -> None:
        """Open the session. ``headers`` (a run's) go on every request; ``send`` given that
        same mapping adds nothing per request, given another sends it on top of them, so a
        caller with new headers for good (a new API key) opens a new transport instead."""
        self._session_headers = headers or None
        connector = self._connector(
            limit=self.max_connections, limit_per_host=self.max_connections,
            ttl_dns_cache=300, enable_cleanup_closed=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._session_headers,
            timeout=aiohttp.ClientTimeout(total=None),  # ours: see _sweep_expired
            auto_decompress=True,  # never asked for, but a gzip body must read as text
            skip_auto_headers=("Accept-Encoding",),
        )

    def headers_with(self, extra: Mapping[str, str]) -> Mapping[str, str]:
        """Headers to send on top of the run's with many requests (a multi-turn session's
        own header, on each of its turns), in the form ``send`` takes best. aiohttp adds a
        request's headers to the session's itself: the mapping as it is."""
        return extra

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for session in (self._session, self._fresh_session):
            if session is not None:
                await session.close()
        self._session = self._fresh_session = None
        for resolver in self._resolvers:  # a connector closes only a resolver of its own
            await resolver.close()
        self._resolvers.clear()

    def _connector(self, **options: object) -> aiohttp.TCPConnector:
        if not self.trace_phases:
            return aiohttp.TCPConnector(**options)  # type: ignore[arg-type]
        resolver = TimedResolver()
        self._resolvers.append(resolver)
        return PhaseConnector(resolver=resolver, **options)  # type: ignore[arg-type]

    async def send(
        self, record: RawRecord, url: str, headers: dict[str, str], body: bytes, streaming: bool
    ) -> None:
        assert self._session is not None
        session = self._session
        # The caller's own mapping from ``start``: nothing to send per request (no compare).
        request_headers = None if headers is self._session_headers else headers
        task = asyncio.current_task()
        assert task is not None
        called_ns = _perf_ns()
        record.wall_start_ns = time.time_ns()
        first_byte = self.first_byte_timeout_seconds
        self._deadlines[task] = (
            called_ns + int(self.timeout_seconds * 1e9),
            called_ns + int(first_byte * 1e9) if first_byte else _NO_DEADLINE,
            record,
        )
        if self._sweep is None:
            self._schedule_sweep()
        if self.trace_phases:
            current_record.set(record)  # for the connector and resolver (trace.py)
        try:
            try:
                await self._exchange(session, record, url, request_headers, body, streaming)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # Refused is not stale, nor a new connection (reused 0) closed on our
                # request: the server dropped it, and a resend would double its work.
                stale = record.response_ns == 0 and record.reused != 0 and not isinstance(
                    exc, aiohttp.ClientConnectorError)
                if not (stale and STALE_CONNECTION_RETRIES):
                    raise
                # The server closed a pooled keep-alive connection before answering
                # (llama-server does after every streamed response, while advertising
                # keep-alive): nothing reached it, so send again on a new connection (not
                # another pooled one: those are likely closed too). The first attempt's
                # start and phases are kept (see above).
                await self._resend(record, url, headers, body, streaming)
        except aiohttp.ClientResponseError as exc:
            record.error = ErrorInfo(exc.status, type(exc).__name__, exc.message)
        except aiohttp.ClientError as exc:
            record.error = ErrorInfo(None, type(exc).__name__, str(exc) or repr(exc))
        except OSError as exc:
            record.error = ErrorInfo(None, type(exc).__name__, str(exc))
        except ValueError as exc:  # a URL or header that cannot be sent (either client)
            record.error = ErrorInfo(None, type(exc).__name__, str(exc))
        except asyncio.CancelledError:
            reason = self._expired.pop(task, None)
            if reason is None:
                raise
            if task.uncancel():
                raise  # cancelled from outside as well: that wins
            record.error = reason
        finally:
            self._deadlines.pop(task, None)
            if self._expired.pop(task, None) is not None:
                # Expired, but something on the way absorbed the cancellation: forget it,
                # so it cannot be taken for a timeout of this slot's next request.
                task.uncancel()
            if record.start_ns == 0:  # no connection was ever in hand
                record.start_ns = called_ns
            else:
                record.wall_start_ns += record.start_ns - called_ns
        record.end_ns = _perf_ns()

    async def _resend(self, record: RawRecord, url: str, headers: dict[str, str],
                      body: bytes, streaming: bool) -> None:
        first_start, first_blocked = record.start_ns, record.blocked_ns
        record.chunks.clear()
        record.start_ns = record.blocked_ns = record.dns_ns = record.connecting_ns = 0
        try:
            await self._exchange(self._fresh(), record, url, headers, body, streaming)
        finally:
            answered = record.start_ns  # the fresh connection in hand (0: never got one)
            if answered and first_start:
                # Lost on the dead connection: from the first attempt's start to the fresh
                # connection's set-up. Waiting for a usable connection, i.e. blocked time.
                lost = answered - first_start - record.dns_ns - record.connecting_ns
                record.blocked_ns += first_blocked + max(0, lost)
                record.resend_ns = answered
            record.start_ns = first_start or answered

    def _schedule_sweep(self) -> None:
        self._sweep = asyncio.get_running_loop().call_later(self._sweep_s, self._sweep_expired)

    def _sweep_expired(self) -> None:
        """Cancel every request past a deadline; ``send`` turns that into its error."""
        self._sweep = None
        now = _perf_ns()
        for task, (deadline, first_byte_deadline, record) in self._deadlines.items():
            if task in self._expired:
                continue
            if deadline <= now:
                self._expired[task] = cancellation(
                    f"{REQUEST_TIMEOUT_REASON}: no complete response within "
                    f"{self.timeout_seconds}s")
                task.cancel()
            elif first_byte_deadline <= now and record.response_ns == 0:
                self._expired[task] = cancellation(
                    f"first-byte timeout: no response within "
                    f"{self.first_byte_timeout_seconds}s")
                task.cancel()
        if self._deadlines:
            self._schedule_sweep()

    def _fresh(self) -> aiohttp.ClientSession:
        """A session that never reuses a connection, for resends."""
        if self._fresh_session is None:
            self._fresh_session = aiohttp.ClientSession(
                connector=self._connector(force_close=True),
                timeout=aiohttp.ClientTimeout(total=None),  # ours: see _sweep_expired
                auto_decompress=True, skip_auto_headers=("Accept-Encoding",))
        return self._fresh_session

    async def _exchange(self, session: aiohttp.ClientSession, record: RawRecord, url: str,
                        headers: Mapping[str, str] | None, body: bytes, streaming: bool) -> None:
        data = StampedBody(body, record) if self.trace_phases else body
        async with session.post(url, data=data, headers=headers) as response:
            record.response_ns = _perf_ns()
            record.status = response.status
            if response.status >= 300:
                text = (await response.read())[:MAX_ERROR_MESSAGE].decode("utf-8", "replace")
                record.error = ErrorInfo(response.status, response.reason or "HTTPError",
                                         text or f"HTTP {response.status}")
            else:
                await self._record_reads(response, record)

    @staticmethod
    async def _record_reads(response: aiohttp.ClientResponse, record: RawRecord) -> None:
        # One (timestamp, bytes) per network read, undecoded: SSE framing and JSON are the
        # record processor's work, off the request path. Events parsed out of one read
        # share its timestamp either way. A whole body is read the same way: its last
        # read's stamp is its last byte, and a large body is never joined here (a copy
        # that would delay every other response's timestamps); the processor joins it.
        # readany is what iter_any awaits, without its iterator and final StopAsyncIteration
        # (about 2 us of CPU per whole body, benchmarks/transport_cpu.py).
        chunks = record.chunks
        read = response.content.readany
        while data := await read():
            chunks.append((_perf_ns(), data))
