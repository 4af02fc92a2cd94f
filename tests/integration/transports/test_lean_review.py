"""Review of the lean client against hostile or odd servers, over real sockets: whatever a
server sends ends as a record or an error record, never a false success, a crash or a hang;
TLS verification failures are clear errors; IPv6 and a URL's path, query and port are sent
as written."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from aiperf.common.codec import RawRecord
from aiperf.transports.http import HttpTransport
from aiperf.transports.lean import LeanHttpTransport

pytestmark = pytest.mark.real_sleep
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-review-secret"}
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
# Every scenario ends well inside this; it is only the guard against a hang.
GUARD_S = 20


def record() -> RawRecord:
    return RawRecord(0, 0, "w", 0, 0, 0, 0, 0, 0, 0, [])


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return head


def body(raw: RawRecord) -> bytes:
    return b"".join(data for _, data in raw.chunks)


async def exchange(handler: Handler, *, timeout: float = 10, first_byte: float | None = None,
                   host: str = "127.0.0.1", path: str = "/v1/chat/completions",
                   tls: ssl.SSLContext | None = None,
                   kind: type[HttpTransport] = LeanHttpTransport) -> tuple[RawRecord, int]:
    """One request to a server running ``handler``; the record and how many connections
    the server saw."""
    connections = 0

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(counted, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    transport = kind(timeout, 2, first_byte_timeout_seconds=first_byte)
    await transport.start(headers=HEADERS)
    raw = record()
    try:
        await transport.send(raw, f"{scheme}://{shown}:{port}{path}", HEADERS, b"{}", False)
    finally:
        await transport.close()
        server.close()
    return raw, connections


def run(coro: Awaitable[tuple[RawRecord, int]]) -> tuple[RawRecord, int]:
    return asyncio.run(asyncio.wait_for(coro, GUARD_S))  # type: ignore[arg-type]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a crashed server or a proxy does."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def test_a_reset_inside_a_body_read_to_the_close_is_an_error_not_a_success() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"choi')
        await writer.drain()
        await asyncio.sleep(0.3)  # the client has read the part by then
        reset(writer)

    raw, _ = run(exchange(handler))
    assert raw.error is not None and raw.error.type == "ClientPayloadError", raw.error


def test_a_server_cut_inside_the_headers_is_an_error_and_the_post_is_not_sent_again() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Ty")  # it was answering: not stale
        await writer.drain()
        await asyncio.sleep(0.1)

    raw, connections = run(exchange(handler))
    assert raw.error is not None and raw.error.type == "ClientPayloadError", raw.error
    assert connections == 1


def test_thousands_of_interim_responses_in_one_read_then_the_answer() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 2000
                     + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(0.5)

    raw, connections = run(exchange(handler))
    assert raw.error is None and raw.status == 200 and body(raw) == b"{}", raw.error
    assert connections == 1


def test_a_status_below_100_is_an_invalid_response_not_an_interim_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 000 Nothing\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        await asyncio.sleep(2)

    raw, _ = run(exchange(handler, timeout=5))
    assert raw.error is not None and raw.error.type == "ClientPayloadError", raw.error


def test_headers_trickled_a_byte_at_a_time_meet_the_first_byte_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)

    raw, _ = run(exchange(handler, timeout=10, first_byte=0.5))
    assert raw.error is not None and "first-byte timeout" in raw.error.message, raw.error
    assert raw.response_ns == 0


def test_waiting_ends_at_the_first_byte_of_a_head_sent_in_two_parts() -> None:
    """http_req_waiting is request sent -> first response byte: a server that sends its
    status line and then, later, the rest of its head is timed from the status line."""
    rest_written_ns = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal rest_written_ns
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)
        rest_written_ns = time.perf_counter_ns()
        writer.write(b"Content-Length: 2\r\n\r\n{}")
        await writer.drain()

    raw, _ = run(exchange(handler))
    assert raw.error is None and raw.status == 200 and body(raw) == b"{}"
    assert raw.sent_ns < raw.response_ns < rest_written_ns


def test_an_endless_body_meets_the_request_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:
            writer.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.001)

    raw, _ = run(exchange(handler, timeout=0.6, first_byte=0.3))
    assert raw.error is not None and "request timeout" in raw.error.message, raw.error
    assert raw.response_ns and raw.chunks  # headers and part of the body came


async def twice(handler: Handler) -> tuple[list[RawRecord], int]:
    """Two requests one after the other on a pool that may reuse; the records and how
    many connections the server saw."""
    connections = 0

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while True:
                await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    transport = LeanHttpTransport(10, 1)
    await transport.start(headers=HEADERS)
    records = [record(), record()]
    for raw in records:
        await transport.send(raw, url, HEADERS, b"{}", False)
    await transport.close()
    server.close()
    return records, connections


def test_chunked_with_a_content_length_is_decoded_and_the_connection_not_reused() -> None:
    # RFC 9112 6.3: chunked wins, and the connection must be closed after the response
    # (the two framings disagree: what follows cannot be trusted).
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
        await writer.drain()

    records, connections = asyncio.run(asyncio.wait_for(twice(handler), GUARD_S))
    for raw in records:
        assert raw.error is None and body(raw) == b"{}", raw.error
    assert connections == 2


def test_conflicting_content_lengths_are_an_invalid_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n"
                     b"{}")
        await writer.drain()
        await asyncio.sleep(0.2)

    raw, _ = run(exchange(handler, timeout=5))
    assert raw.error is not None and raw.error.type == "ClientPayloadError", raw.error
    assert "Content-Length" in raw.error.message  # refused, not waited out to the close


def test_a_malformed_url_or_header_is_an_error_record_not_an_exception() -> None:
    async def scenario() -> list[RawRecord]:
        transport = LeanHttpTransport(5, 2)
        await transport.start(headers=HEADERS)
        bad_url, bad_header = record(), record()
        await transport.send(bad_url, "ftp://127.0.0.1:1/x?api_key=sk-in-query", HEADERS,
                             b"{}", False)
        await transport.send(bad_header, "http://127.0.0.1:1/x",
                             {"X-Note": "a\r\nInjected: 1"}, b"{}", False)
        await transport.close()
        return [bad_url, bad_header]

    for raw in asyncio.run(asyncio.wait_for(scenario(), GUARD_S)):
        assert raw.error is not None and raw.error.type == "ValueError", raw
        assert "sk-in-query" not in raw.error.message and "Injected" not in raw.error.message
        assert raw.end_ns >= raw.start_ns > 0


def test_ipv6_literal_path_query_and_port_are_sent_as_written() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    raw, _ = run(exchange(handler, host="::1", path="/v1/x?a=1&b=%20"))
    assert raw.error is None and body(raw) == b"{}", raw.error
    line, host = heads[0].split(b"\r\n")[:2]
    assert line == b"POST /v1/x?a=1&b=%20 HTTP/1.1"
    assert host.startswith(b"Host: [::1]:")


def self_signed(directory: Path) -> ssl.SSLContext:
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_https_to_a_self_signed_server_is_a_clear_verification_error(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()

    async def scenario() -> tuple[list[RawRecord], int]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        transport = LeanHttpTransport(10, 2)
        await transport.start(headers=HEADERS)
        records = [record() for _ in range(5)]
        await asyncio.gather(*(transport.send(r, f"https://127.0.0.1:{port}/v1", HEADERS,
                                              b"{}", False) for r in records))
        count = transport._session.count  # type: ignore[union-attr]
        await transport.close()
        server.close()
        return records, count

    records, count = asyncio.run(asyncio.wait_for(scenario(), GUARD_S))
    for raw in records:
        assert raw.error is not None and raw.error.type == "ClientConnectorError", raw.error
        assert "CERTIFICATE_VERIFY_FAILED" in raw.error.message, raw.error.message
        assert "sk-review-secret" not in raw.error.message
    assert count == 0  # failed handshakes hold no place in the pool


@pytest.mark.parametrize("size", [b"-0", b"0x2", b"+2", b"1_1", b"", b"zz"])
def test_a_chunk_size_that_is_not_hex_digits_is_an_invalid_response(size: bytes) -> None:
    # int(..., 16) takes signs, a 0x prefix and underscores; HTTP takes hex digits only.
    # "-0" read as 0 ended the body there: a cut body recorded as a success.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n"
                     + size + b"\r\n}}\r\n0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.2)

    raw, _ = run(exchange(handler, timeout=5))
    assert raw.error is not None and raw.error.type == "ClientPayloadError", raw.error
    assert "chunk size" in raw.error.message


@pytest.mark.parametrize("kind", [HttpTransport, LeanHttpTransport],
                         ids=["aiohttp", "lean"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_body_is_recorded_decompressed_read_by_read(
        encoding: str, kind: type[HttpTransport]) -> None:
    # Nothing asks for compression (no Accept-Encoding), but a server or proxy may send it
    # anyway; the metrics read text, so the record keeps what the bytes decode to, each
    # piece stamped with the read that carried it.
    import zlib

    events = [b'data: {"n": %d}\n\n' % i for i in range(3)]
    packer = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
    parts = [packer.compress(event) + packer.flush(zlib.Z_SYNC_FLUSH) for event in events]
    parts[-1] += packer.flush()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\n"
                     f"Transfer-Encoding: chunked\r\n\r\n".encode())
        for part in parts:
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    raw, _ = run(exchange(handler, kind=kind))
    assert raw.error is None, raw.error
    assert body(raw) == b"".join(events)
    assert len(raw.chunks) == 3  # one stamp per read, not one at the end


def test_the_pool_limit_holds_and_places_come_back_when_servers_close_pooled_connections(
) -> None:
    # A server that answers with keep-alive and then closes some connections once idle
    # (as llama-server does after a stream): requests find dead pooled connections, are
    # sent again on fresh ones, and no place in the pool is lost or counted twice.
    open_now = most = served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most, served
        open_now += 1
        most = max(most, open_now)
        try:
            while True:
                await read_request(reader)
                served += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                if served % 3 == 0:
                    await asyncio.sleep(0.01)
                    break  # close behind the client's back, advertised keep-alive
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            open_now -= 1
            writer.close()

    async def scenario() -> tuple[list[RawRecord], int, int]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        transport = LeanHttpTransport(10, 2)
        await transport.start(headers=HEADERS)
        records: list[RawRecord] = []
        for _ in range(8):
            batch = [record() for _ in range(3)]
            await asyncio.gather(*(transport.send(r, url, HEADERS, b"{}", False)
                                   for r in batch))
            records += batch
            await asyncio.sleep(0.03)  # let the server's closes land on idle connections
        pools = transport._pools
        await asyncio.sleep(0.05)
        counts = [pool.count for pool in pools]
        await transport.close()
        server.close()
        return records, counts[0], sum(counts[1:])

    records, pooled, fresh = asyncio.run(asyncio.wait_for(scenario(), GUARD_S))
    for raw in records:
        assert raw.error is None and body(raw) == b"{}", raw.error
    # Each pool keeps its own limit of 2 (resends use a second pool: at most 4 at once).
    assert most <= 4
    assert 0 <= pooled <= 2 and fresh == 0


@pytest.mark.parametrize("kind", [HttpTransport, LeanHttpTransport], ids=["aiohttp", "lean"])
def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_resend(
        kind: type[HttpTransport]) -> None:
    # Only a *pooled* connection can be stale (closed while idle, before our request got
    # there); a new one that the server closes on reading the request dropped the request:
    # sending the POST again would double the server's work and hide the failure.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    raw, connections = run(exchange(handler, kind=kind))
    assert raw.error is not None and raw.error.type == "ServerDisconnectedError", raw.error
    assert connections == 1 and raw.reused == 0


def test_https_with_a_trusted_certificate_is_served_and_its_connection_reused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tls = self_signed(tmp_path)
    # The default context's trust store honours SSL_CERT_FILE: trust only our certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"2\r\n{}\r\n0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            writer.close()

    async def scenario() -> list[RawRecord]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        transport = LeanHttpTransport(10, 1)
        await transport.start(headers=HEADERS)
        records = [record(), record()]
        for raw in records:
            await transport.send(raw, f"https://127.0.0.1:{port}/v1", HEADERS, b"{}", False)
        await transport.close()
        server.close()
        return records

    first, second = asyncio.run(asyncio.wait_for(scenario(), GUARD_S))
    for raw in (first, second):
        assert raw.error is None and body(raw) == b"{}", raw.error
    assert (first.reused, second.reused) == (0, 1) and first.connecting_ns > 0


OK_JSON = b'{"choices": []}'


@pytest.mark.parametrize(("response", "status", "payload", "error_type"), [
    # HTTP/1.0 without a length: the body ends with the server's close.
    (b"HTTP/1.0 200 OK\r\n\r\n" + OK_JSON, 200, OK_JSON, None),
    # Early hints, then the answer.
    (b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(OK_JSON), OK_JSON),
     200, OK_JSON, None),
    # No body by definition: a record without chunks (the metrics call it EmptyResponse).
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, b"", None),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 304, b"", "Not Modified"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}", 0, b"", "ClientPayloadError"),
    (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n{}", 0, b"",
     "ClientPayloadError"),
], ids=["http10-until-close", "103-then-200", "204", "304", "negative-length", "huge-header"])
def test_what_a_server_sends_ends_as_the_right_record(
        response: bytes, status: int, payload: bytes, error_type: str | None) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for start in range(0, len(response), 8192):  # in pieces: a head over many reads
            writer.write(response[start:start + 8192])
            await writer.drain()
        if response.startswith(b"HTTP/1.0"):
            return  # the close ends the body
        await asyncio.sleep(3)  # an error must not wait for this

    raw, _ = run(exchange(handler, timeout=10))
    if error_type is None:
        assert raw.error is None and raw.status == status, raw.error
        assert body(raw) == payload
    else:
        assert raw.error is not None and raw.error.type == error_type, raw.error
        assert raw.end_ns - raw.start_ns < 2.5e9  # refused at once, not at the close
        if status:
            assert raw.error.code == status
