"""A lean HTTP/1.1 client for the hot path: the same ``send`` and the same record as
``HttpTransport``, without aiohttp's per-request machinery.

aiohttp builds a ``ClientRequest``, a ``ClientResponse``, a ``StreamWriter``, a body payload,
a header multidict and (on Python 3.11) a task to write the body for every request. Through
``HttpTransport.send`` that is 84-96 us of CPU per non-streaming request on a 2-core box,
and 21-23 us with this client, which writes prebuilt bytes and parses the response in
``data_received`` (streaming, 16 chunks: 104-154 against 50; benchmarks/transport_cpu.py).
In the mesh the worker went from 97 to 28 us per non-streaming request and from 152 to 63
streaming (benchmarks/client_throughput.py --cpu-breakdown). On a 2-core box a load test
is a CPU race between the client and the server under test, so that difference is most of
the distance between the mesh and a bare aiohttp client.

What it does: keep-alive connections in a pool bounded by ``max_connections`` (a request
waits for a free one: ``blocked_ns``), DNS results cached for ``DNS_TTL_S`` (``dns_ns``),
plain TCP or TLS (default certificate checks), request bodies sent as given, responses
framed by Content-Length, chunked transfer coding (decoded here; a record keeps the
payload, as aiohttp's reads give it) or the connection's end; 1xx interim responses
skipped; a gzip or deflate body (never asked for) decompressed read by read, others kept
as sent.
The stamps are taken in ``data_received``, when a read arrives, not when a task resumes:
a stream's reads go into the record without waking the request's task at all.
``response_ns`` is the arrival of the final (not interim) response's first byte, even when
the rest of its head comes later.

What it does not: redirects (a 3xx is the record's error, where aiohttp would follow it),
proxies, HTTP/2, ``Expect: 100-continue``, a URL's userinfo (aiohttp sends it as Basic
auth; here it is dropped: put credentials in headers). Errors carry aiohttp's exception type names
(``ClientConnectorError``, ``ServerDisconnectedError``, ``ClientPayloadError``), so error
summaries read the same with either client. Timeouts, stale-connection resends and error
records are ``HttpTransport.send``'s, shared.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as ssl_module
import time
import zlib
from collections import deque
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from yarl import URL

from aiperf.common.codec import MAX_ERROR_MESSAGE, ErrorInfo, RawRecord
from aiperf.transports.http import HttpTransport

_perf_ns = time.perf_counter_ns
DNS_TTL_S = 300.0  # as HttpTransport's aiohttp connector caches names
MAX_HEAD_BYTES = 64 * 1024  # a status line and headers longer than this are refused
HEADER_BLOCKS_KEPT = 64  # callers' own header mappings whose bytes are kept (sessions')
_NO_BODY_STATUSES = frozenset((204, 304))
_HEX_DIGITS = b"0123456789abcdefABCDEF"

# Response framing
_LENGTH, _CHUNKED, _UNTIL_CLOSE, _NONE = range(4)
# Chunked decoding states
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class _Target:
    """What a URL contributes to every request sent to it, worked out once (yarl, as
    aiohttp does: an IDNA host, a percent-encoded path)."""

    __slots__ = ("host", "key", "port", "request_line", "tls")

    def __init__(self, url: str) -> None:
        # The message names the scheme and host only: a URL's query or userinfo may hold
        # a key, and this message lands in the record.
        try:
            parsed = URL(url)
        except ValueError:
            raise ValueError("url: not a URL the lean HTTP client can read") from None
        scheme = parsed.scheme.lower()
        if scheme not in ("http", "https") or not parsed.raw_host or parsed.port is None:
            raise ValueError(f"url: the lean HTTP client serves http:// and https:// URLs "
                             f"with a host, not {scheme or 'no scheme'}://"
                             f"{parsed.raw_host or ''}")
        self.tls = scheme == "https"
        self.host = parsed.raw_host
        self.port = parsed.port
        self.key = (self.host, self.port, self.tls)
        host = f"[{self.host}]" if ":" in self.host else self.host
        if not parsed.is_default_port():
            host = f"{host}:{self.port}"
        self.request_line = (f"POST {parsed.raw_path_qs or '/'} HTTP/1.1\r\n"
                             f"Host: {host}\r\n").encode("ascii")


_FRAMING = ("host", "content-length", "transfer-encoding")  # the client's, never a caller's
_DEFAULTED = frozenset(("accept", "content-type"))  # aiohttp's defaults, when left out


def _header_lines(headers: Mapping[str, str]) -> tuple[list[str], set[str]]:
    """The header lines a caller's headers send (framing left out) and their names, lower
    case."""
    lines: list[str] = []
    names = set()
    for name, value in headers.items():
        text = f"{name}{value}"
        if "\r" in text or "\n" in text or ":" in name:
            raise ValueError(f"header {name!r}: a name or value with a line break (or a "
                             f"colon in the name) cannot be sent")
        lower = name.lower()
        if lower in _FRAMING:
            continue
        names.add(lower)
        lines.append(f"{name}: {value}\r\n")
    return lines, names


def _header_block(headers: Mapping[str, str]) -> bytes:
    """Header lines as sent, with aiohttp's defaults for what the caller left out."""
    lines, names = _header_lines(headers)
    if "accept" not in names:
        lines.append("Accept: */*\r\n")
    if "content-type" not in names:
        lines.append("Content-Type: application/octet-stream\r\n")  # aiohttp's for bytes
    return "".join(lines).encode("utf-8")


class _Rendered(dict[str, str]):
    """A caller's headers with the bytes a lean client sends for them (its run's header
    block and theirs), made once by its ``headers_with``; ``base``: that run's block (the
    object: another client's, or the same client's after a new ``start``, is another)."""

    __slots__ = ("base", "block")
    base: bytes
    block: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses the response of the request it carries."""

    def __init__(self, pool: _Pool, key: tuple[str, int, bool]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.counted = True  # in the pool's count until closed
        self.idle = False
        self.record: RawRecord | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.reusable = True
        self.status = 0
        self.reason = ""
        self._head = bytearray()
        self._in_head = True
        self._framing = _NONE
        self._remaining = 0
        self._chunk_state = _SIZE
        self._line = bytearray()
        self._interim = False  # an interim (1xx) response came for this request
        self._decoder: Any = None  # a zlib decompressor for a gzip or deflate body
        self._head_ns = 0  # when the first byte of the response's head arrived

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small requests must leave at once (Nagle + delayed ACK would add ~40 ms).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        now = _perf_ns()
        record = self.record
        if record is None or self.waiter is None:  # bytes nobody asked for: unusable
            self.reusable = False
            if self.transport is not None:
                self.transport.close()
            return
        try:
            if self._in_head:
                data = self._parse_head(data, now, record)
                while self._in_head and data:  # bytes after an interim response
                    data = self._parse_head(data, now, record)
                if self._in_head or self.waiter is None:
                    return
            if data:
                if self._decoder is None:
                    self._body(data, now, record)
                else:
                    self._inflated_body(data, now, record)
        except ValueError as exc:
            self._fail(aiohttp.ClientPayloadError(f"invalid HTTP response: {exc}"))
        except Exception as exc:  # a parser fault: this request's error,
            # not asyncio's fatal close (read as a stale connection and sent again)
            self._fail(aiohttp.ClientPayloadError(
                f"invalid HTTP response: {type(exc).__name__}: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # close our end too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        self.pool.forget(self)
        if self.waiter is None or self.waiter.done():
            return
        if self._in_head:
            if self._head or self._interim:
                # The server had begun to answer: the request reached it, so this is no
                # stale pooled connection to send the request again on.
                self._fail(aiohttp.ClientPayloadError(
                    "Response payload is not completed: the connection closed within the "
                    "response headers"))
            else:
                self._fail(aiohttp.ServerDisconnectedError())
        elif self._framing == _UNTIL_CLOSE and exc is None:
            self._finish()  # an orderly close is this body's end; a reset is not
        elif self._framing == _UNTIL_CLOSE:
            self._fail(aiohttp.ClientPayloadError(
                f"Response payload is not completed: {type(exc).__name__} before the "
                f"connection's orderly close"))
        else:
            self._fail(aiohttp.ClientPayloadError(
                "Response payload is not completed: the connection closed before the "
                "end of the body"))

    # -- one exchange -----------------------------------------------------------------------

    def begin(self, record: RawRecord) -> asyncio.Future[None]:
        self.record = record
        self.status = 0
        self.reason = ""
        self._head.clear()
        self._in_head = True
        self._framing = _NONE
        self._remaining = 0
        self._chunk_state = _SIZE
        self._line.clear()
        self._interim = False
        self._decoder = None
        self.waiter = self.pool.loop.create_future()
        return self.waiter

    def _finish(self) -> None:
        waiter, self.waiter = self.waiter, None
        self.record = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        waiter, self.waiter = self.waiter, None
        self.record = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def _parse_head(self, data: bytes, now: int, record: RawRecord) -> bytes:
        """Reads the status line and headers; returns the bytes after them."""
        head = self._head
        if not head:  # the response's first byte (a slow server may dribble its head)
            self._head_ns = now
        start = max(0, len(head) - 3)
        head += data
        end = head.find(b"\r\n\r\n", start)
        if end < 0 or end > MAX_HEAD_BYTES:  # the limit whether or not one read held it all
            if len(head) > MAX_HEAD_BYTES:
                raise ValueError(f"status line and headers over {MAX_HEAD_BYTES} bytes")
            return b""
        rest = bytes(head[end + 4:])
        lines = bytes(head[:end]).split(b"\r\n")
        version, _, status_reason = lines[0].partition(b" ")
        code, _, reason = status_reason.partition(b" ")
        if (not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit()
                or code[0] == 0x30):  # no status below 100
            raise ValueError(f"status line {lines[0][:80]!r}")
        status = int(code)
        if status < 200:  # an interim response (100, 103): the real one follows
            self._interim = True
            head.clear()
            return rest  # still in the head: the caller parses on (a loop, not recursion)
        keep_alive = version == b"HTTP/1.1"
        length = -1
        chunked = False
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ValueError(f"header line {line[:80]!r}")
            name = name.strip().lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit() or (length >= 0 and int(value) != length):
                    raise ValueError(f"Content-Length {value[:40]!r}")  # or two that differ
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif name == b"content-encoding":
                coding = value.strip().lower()
                if coding in (b"gzip", b"x-gzip", b"deflate"):
                    # Not asked for (no Accept-Encoding), but sent by some servers and
                    # proxies: the metrics need the text (aiohttp decompresses by default).
                    self._decoder = zlib.decompressobj(wbits=47)  # gzip or zlib header
            elif name == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
        self.status = record.status = status
        self.reason = reason.decode("latin-1")
        record.response_ns = self._head_ns
        self._in_head = False
        head.clear()
        if not keep_alive or (chunked and length >= 0):
            # Two framings that disagree (RFC 9112 6.3): what follows cannot be trusted.
            self.reusable = False
        if status in _NO_BODY_STATUSES or (length == 0 and not chunked):
            self._framing = _NONE
            if rest:
                self.reusable = False
            self._finish()
            return b""
        if chunked:
            self._framing = _CHUNKED
        elif length > 0:
            self._framing = _LENGTH
            self._remaining = length
        else:
            self._framing = _UNTIL_CLOSE
            self.reusable = False
        return rest

    def _body(self, data: bytes, now: int, record: RawRecord) -> None:
        framing = self._framing
        if framing == _LENGTH:
            if len(data) >= self._remaining:
                if len(data) > self._remaining:
                    data = data[:self._remaining]
                    self.reusable = False  # more than the body: nothing to trust after it
                self._remaining = 0
                record.chunks.append((now, data))
                self._finish()
                return
            self._remaining -= len(data)
            record.chunks.append((now, data))
        elif framing == _CHUNKED:
            payload = self._dechunk(data)
            if payload:
                record.chunks.append((now, payload))
            if self._chunk_state == -1:
                self._finish()
        else:
            record.chunks.append((now, data))

    def _inflated_body(self, data: bytes, now: int, record: RawRecord) -> None:
        """``_body`` for a compressed body: framing reads the bytes as sent, the record
        keeps what each read decompresses to, stamped with that read's time."""
        chunks = record.chunks
        kept = len(chunks)
        self._body(data, now, record)
        decoder = self._decoder
        inflated = [(stamp, decoder.decompress(piece)) for stamp, piece in chunks[kept:]]
        chunks[kept:] = [(stamp, piece) for stamp, piece in inflated if piece]

    def _dechunk(self, data: bytes) -> bytes:
        """The payload bytes of one read of a chunked body; ``_chunk_state`` -1 at its end."""
        out: list[bytes] = []
        position = 0
        size = len(data)
        while position < size:
            state = self._chunk_state
            if state == _DATA:
                take = min(self._remaining, size - position)
                out.append(data[position:position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = _DATA_END
                continue
            newline = data.find(b"\n", position)
            if newline < 0:
                self._line += data[position:]
                if len(self._line) > MAX_HEAD_BYTES:
                    raise ValueError("chunk size line too long")
                break
            line = bytes(self._line) + data[position:newline] if self._line else \
                data[position:newline]
            self._line.clear()
            position = newline + 1
            line = line.rstrip(b"\r")
            if state == _SIZE:
                digits = line.split(b";", 1)[0].strip()
                # Hex digits only: int() would also take a sign ("-0" would end the
                # body), a 0x prefix and underscores.
                if not digits or digits.strip(_HEX_DIGITS):
                    raise ValueError(f"chunk size {digits[:20]!r}")
                self._remaining = int(digits, 16)
                self._chunk_state = _DATA if self._remaining else _TRAILER
            elif state == _DATA_END:
                if line:
                    raise ValueError("no line end after a chunk")
                self._chunk_state = _SIZE
            elif not line:  # _TRAILER: an empty line ends the body
                self._chunk_state = -1
                if position < size:
                    self.reusable = False
                break
        return out[0] if len(out) == 1 else b"".join(out)


class _Pool:
    """Connections by (host, port, tls), at most ``limit`` open at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int, reuse: bool) -> None:
        self.loop = loop
        self.limit = limit
        self.reuse = reuse
        self.count = 0
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[Any, ...]]]] = {}
        self._tls: ssl_module.SSLContext | None = None
        self._all: set[_Connection] = set()

    async def acquire(self, target: _Target, record: RawRecord) -> _Connection:
        while True:
            idle = self._idle.get(target.key)
            while idle:
                connection = idle.pop()
                connection.idle = False
                if not connection.lost:
                    record.reused = 1
                    return connection
            if self.count < self.limit:
                break
            began = _perf_ns()
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the turn is the next one's
                else:
                    self._waiters.remove(waiter)
                raise
            finally:
                record.blocked_ns += _perf_ns() - began
        self.count += 1
        try:
            connection = await self._open(target, record)
        except BaseException:
            self.count -= 1
            self._wake()
            raise
        record.reused = 0
        return connection

    async def _open(self, target: _Target, record: RawRecord) -> _Connection:
        addresses = await self._resolve(target, record)
        began = _perf_ns()
        tls: ssl_module.SSLContext | None = None
        if target.tls:
            if self._tls is None:
                self._tls = ssl_module.create_default_context()
            tls = self._tls
        last: OSError | None = None
        for family, _, proto, _, address in addresses:
            connection = _Connection(self, target.key)
            try:
                await self.loop.create_connection(
                    lambda c=connection: c, host=address[0], port=address[1],  # type: ignore[misc]
                    family=family, proto=proto, ssl=tls,
                    server_hostname=target.host if tls else None)
            except OSError as exc:
                last = exc
                continue
            record.connecting_ns = _perf_ns() - began
            self._all.add(connection)
            return connection
        assert last is not None
        key = ConnectionKey(target.host, target.port, target.tls, True, None, None, None)
        raise aiohttp.ClientConnectorError(key, last)  # type: ignore[arg-type]

    async def _resolve(self, target: _Target, record: RawRecord) -> list[tuple[Any, ...]]:
        try:
            ip_address(target.host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 0, "", (target.host, target.port))]
        name = (target.host, target.port)
        cached = self._dns.get(name)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        began = _perf_ns()
        try:
            addresses = await self.loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM)
        except OSError as exc:
            key = ConnectionKey(target.host, target.port, target.tls, True, None, None, None)
            raise aiohttp.ClientConnectorError(key, exc) from None  # type: ignore[arg-type]
        finally:
            record.dns_ns += _perf_ns() - began
        self._dns[name] = (time.monotonic() + DNS_TTL_S, addresses)
        return addresses

    def release(self, connection: _Connection) -> None:
        connection.record = None
        if self.reuse and connection.reusable and not connection.lost:
            connection.idle = True
            self._idle.setdefault(connection.key, []).append(connection)
            self._wake()
            return
        self.forget(connection)
        if connection.transport is not None:
            connection.transport.close()

    def forget(self, connection: _Connection) -> None:
        """A connection closed (or about to): its place in the pool is free."""
        if connection.idle:
            connection.idle = False
            idle = self._idle.get(connection.key)
            if idle and connection in idle:
                idle.remove(connection)
        if connection.counted:
            connection.counted = False
            self._all.discard(connection)
            self.count -= 1
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for connection in list(self._all):
            if connection.transport is not None:
                connection.transport.close()
            self.forget(connection)
        self._idle.clear()


class LeanHttpTransport(HttpTransport):
    """``HttpTransport`` with the lean client underneath (see the module's docstring);
    phases are always recorded (they cost a few clock reads), ``trace_phases`` is kept
    for the signature."""

    def __init__(self, timeout_seconds: float, max_connections: int,
                 first_byte_timeout_seconds: float | None = None,
                 trace_phases: bool = True) -> None:
        super().__init__(timeout_seconds, max_connections, first_byte_timeout_seconds,
                         trace_phases)
        self._targets: dict[str, _Target] = {}
        self._session_block = b""
        # What the session's block already names: a caller's header of another name is
        # added to it, one of these replaces a line in it.
        self._session_names: set[str] = set(_DEFAULTED)
        self._heads: dict[str, bytes] = {}  # by header name: see _added_block
        self._blocks: dict[int, tuple[Mapping[str, str], bytes]] = {}
        self._pools: list[_Pool] = []

    async def start(self, headers: Mapping[str, str] | None = None) -> None:
        self._session_headers = headers or None
        self._session_block = _header_block(headers or {})
        self._session_names = _header_lines(headers or {})[1] | _DEFAULTED
        self._heads.clear()  # both built on the run's headers
        self._blocks.clear()
        pool = _Pool(asyncio.get_running_loop(), self.max_connections, reuse=True)
        self._pools.append(pool)
        self._session = pool  # type: ignore[assignment]

    async def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for pool in self._pools:
            pool.close()
        self._pools.clear()
        self._session = self._fresh_session = None

    def _fresh(self) -> Any:
        if self._fresh_session is None:
            pool = _Pool(asyncio.get_running_loop(), self.max_connections, reuse=False)
            self._pools.append(pool)
            self._fresh_session = pool  # type: ignore[assignment]
        return self._fresh_session

    def headers_with(self, extra: Mapping[str, str]) -> Mapping[str, str]:
        """``extra`` with its bytes, built once here rather than looked up by ``_block`` on
        each request (at c=32, a session's header cost 2 us a request that way). One that
        replaces a header of the run's is merged by ``_block`` instead."""
        block = self._added_block(extra)
        if block is None:
            return extra
        headers = _Rendered(extra)
        headers.base, headers.block = self._session_block, block
        return headers

    def _added_block(self, headers: Mapping[str, str]) -> bytes | None:
        """The run's block with the lines of ``headers`` after it; None when one of them
        replaces a line of it (then the two are merged and built again)."""
        if len(headers) == 1:  # a session's one header: its name is checked once a run
            ((name, value),) = headers.items()
            head = self._heads.get(name)
            if head is None:
                if len(self._heads) >= HEADER_BLOCKS_KEPT:
                    self._heads.clear()
                head = self._heads[name] = self._head_of(name)
            if head and "\r" not in value and "\n" not in value:
                return b"".join((self._session_block, head, value.encode(), b"\r\n"))
        lines, names = _header_lines(headers)
        if not names.isdisjoint(self._session_names):
            return None
        return self._session_block + "".join(lines).encode("utf-8")

    def _head_of(self, name: str) -> bytes:
        """``b"Name: "`` for a header name added to the run's block as it is; b"" for one
        that is not (a framing header, one of the run's, one that cannot be sent), which
        ``_added_block``'s general path deals with."""
        try:
            lines, names = _header_lines({name: ""})
        except ValueError:
            return b""
        return lines[0][:-2].encode() if lines and names.isdisjoint(self._session_names) \
            else b""

    def _block(self, headers: Mapping[str, str] | None) -> bytes:
        if headers is None:
            return self._session_block
        if type(headers) is _Rendered and headers.base is self._session_block:
            return headers.block
        # A caller's own mapping, usually the same object request after request (a
        # session's headers): its bytes are kept while that object lives.
        cached = self._blocks.get(id(headers))
        if cached is not None and cached[0] is headers:
            return cached[1]
        block = self._added_block(headers)
        if block is None:
            merged = dict(self._session_headers or {})
            merged.update(headers)
            block = _header_block(merged)
        if len(self._blocks) >= HEADER_BLOCKS_KEPT:
            # The oldest goes (dicts keep insertion order), not all: at c=32, each of 32
            # live sessions rebuilt its block after every clear, 2 us a request in all.
            del self._blocks[next(iter(self._blocks))]
        self._blocks[id(headers)] = (headers, block)
        return block

    async def _exchange(self, session: Any, record: RawRecord, url: str,
                        headers: Mapping[str, str] | None, body: bytes,
                        streaming: bool) -> None:
        pool: _Pool = session
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = _Target(url)
        head = b"%s%sContent-Length: %d\r\n\r\n" % (
            target.request_line, self._block(headers), len(body))
        connection = await pool.acquire(target, record)
        waiter = connection.begin(record)
        try:
            transport = connection.transport
            assert transport is not None
            record.start_ns = record.sent_ns = _perf_ns()
            if len(body) < 16384:
                transport.write(head + body)
            else:  # a large body is not copied to join it to the head
                transport.writelines((head, body))
            await waiter
        except BaseException:
            connection.reusable = False
            pool.release(connection)
            raise
        pool.release(connection)
        if connection.status >= 300:
            text = b"".join(data for _, data in record.chunks)[:MAX_ERROR_MESSAGE]
            record.chunks.clear()
            record.error = ErrorInfo(connection.status, connection.reason or "HTTPError",
                                     text.decode("utf-8", "replace")
                                     or f"HTTP {connection.status}")
