"""The lean HTTP client's response parser (``transports/lean.py``) fed the bytes a server
sends, split into reads anywhere: the record keeps the body's payload, whatever the split."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from itertools import pairwise

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import RawRecord
from aiperf.transports.lean import (
    LeanHttpTransport,
    _Connection,
    _header_block,
    _Pool,
    _Target,
)


def record() -> RawRecord:
    return RawRecord(0, 0, "w", 0, 0, 0, 0, 0, 0, 0, [])


def chunked(body: bytes, sizes: list[int]) -> bytes:
    """``body`` in the chunked transfer coding, chunk sizes from ``sizes`` (cycled)."""
    out, position, i = [], 0, 0
    while position < len(body):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(body)
        piece = body[position:position + size]
        out.append(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
        position += len(piece)
        i += 1
    return b"".join(out) + b"0\r\nTrailer: x\r\n\r\n"


def split(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in pairwise(points):
        yield data[start:end]


def feed(response: bytes, cuts: list[int]) -> tuple[RawRecord, _Connection, BaseException | None]:
    """One response through a connection, read by read, on a real event loop."""
    loop = asyncio.new_event_loop()
    try:
        connection = _Connection(_Pool(loop, 1, reuse=True), ("h", 80, False))
        raw = record()
        waiter = connection.begin(raw)
        for stamp, read in enumerate(split(response, cuts)):
            connection.data_received(read)
            assert raw.chunks == [] or all(t > 0 for t, _ in raw.chunks), stamp
            if waiter.done():
                break
        if not waiter.done():
            connection.connection_lost(None)
        error = waiter.exception() if waiter.done() and not waiter.cancelled() else None
        return raw, connection, error
    finally:
        loop.close()


HEAD_LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
bodies = st.binary(min_size=1, max_size=600)
cut_lists = st.lists(st.integers(min_value=0, max_value=2000), max_size=12)


@settings(max_examples=150, deadline=None)
@given(body=bodies, cuts=cut_lists)
def test_a_length_framed_body_is_kept_whole_however_it_is_read(body: bytes,
                                                               cuts: list[int]) -> None:
    raw, connection, error = feed(HEAD_LENGTH % len(body) + body, cuts)
    assert error is None and raw.status == 200 and raw.response_ns > 0
    assert b"".join(data for _, data in raw.chunks) == body
    assert connection.reusable


@settings(max_examples=150, deadline=None)
@given(body=bodies, sizes=st.lists(st.integers(1, 300), max_size=5), cuts=cut_lists)
def test_a_chunked_body_is_decoded_however_it_is_chunked_and_read(
        body: bytes, sizes: list[int], cuts: list[int]) -> None:
    raw, connection, error = feed(HEAD_CHUNKED + chunked(body, sizes), cuts)
    assert error is None and raw.status == 200
    assert b"".join(data for _, data in raw.chunks) == body
    assert all(data for _, data in raw.chunks)  # a read of framing only adds nothing
    assert connection.reusable


@settings(max_examples=100, deadline=None)
@given(body=bodies, cuts=cut_lists)
def test_a_body_without_length_ends_with_the_connection(body: bytes, cuts: list[int]) -> None:
    raw, connection, error = feed(b"HTTP/1.1 200 OK\r\n\r\n" + body, cuts)
    assert error is None and b"".join(data for _, data in raw.chunks) == body
    assert not connection.reusable


def test_an_interim_response_is_skipped() -> None:
    raw, _, error = feed(b"HTTP/1.1 100 Continue\r\n\r\n" + HEAD_LENGTH % 2 + b"{}", [30])
    assert error is None and raw.status == 200 and raw.chunks[-1][1] == b"{}"


@pytest.mark.parametrize(("response", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}", True),
    (b"HTTP/1.1 204 No Content\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra", False),
])
def test_keep_alive_follows_the_response(response: bytes, reusable: bool) -> None:
    _, connection, error = feed(response, [])
    assert error is None and connection.reusable is reusable


@pytest.mark.parametrize(("response", "kind"), [
    (b"", aiohttp.ServerDisconnectedError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", aiohttp.ClientPayloadError),
    (HEAD_CHUNKED + b"5\r\nab", aiohttp.ClientPayloadError),
    (b"SMTP ready\r\n\r\n", aiohttp.ClientPayloadError),
    (b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n", aiohttp.ClientPayloadError),
    (HEAD_CHUNKED + b"zz\r\n", aiohttp.ClientPayloadError),
])
def test_a_broken_or_cut_response_is_an_error_of_aiohttps_type(
        response: bytes, kind: type[BaseException]) -> None:
    _, connection, error = feed(response, [])
    assert isinstance(error, kind) and not connection.reusable


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), cut_lists)
def test_any_bytes_end_as_a_record_or_an_error_never_a_crash(data: bytes,
                                                             cuts: list[int]) -> None:
    raw, _, error = feed(data, cuts)
    assert error is None or isinstance(error, aiohttp.ClientError)
    assert error is not None or raw.status >= 200


def test_the_request_line_and_headers_are_sent_as_aiohttp_would() -> None:
    target = _Target("http://example.com:8000/v1/chat/completions?x=a b")
    assert target.request_line == (b"POST /v1/chat/completions?x=a+b HTTP/1.1\r\n"
                                   b"Host: example.com:8000\r\n")
    assert _Target("https://example.com/").request_line.endswith(b"Host: example.com\r\n")
    assert _Target("http://[::1]:81/").key == ("::1", 81, False)
    block = _header_block({"Content-Type": "application/json", "Content-Length": "9"})
    assert block == b"Content-Type: application/json\r\nAccept: */*\r\n"
    with pytest.raises(ValueError, match="X-Bad"):
        _header_block({"X-Bad": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="url"):
        _Target("ftp://example.com/")


def _started(session_headers: dict[str, str]) -> LeanHttpTransport:
    transport = LeanHttpTransport(timeout_seconds=1.0, max_connections=32)
    asyncio.run(transport.start(headers=session_headers))
    return transport


def _lines(block: bytes) -> list[bytes]:
    """A header block's lines in any order: their order means nothing to a server."""
    return sorted(block.split(b"\r\n"))


def test_each_live_sessions_header_bytes_are_built_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A session's own headers (a mapping per session, used for each of its turns) are
    built into bytes once while it runs: at c=32 the live sessions' blocks stay among the
    latest kept, the oldest going first, where emptying the cache when it was full rebuilt
    every live session's block again."""
    from aiperf.transports import lean

    builds: list[str] = []
    transport = _started({"Authorization": "Bearer k"})
    real_build = transport._added_block

    def counted(headers: dict[str, str]) -> bytes | None:
        builds.append(headers["X-Session-ID"])
        return real_build(headers)

    monkeypatch.setattr(transport, "_added_block", counted)
    sessions = 0
    slots: list[tuple[dict[str, str], int]] = []
    for i in range(32):  # staggered: a session ends every round or so
        slots.append(({"X-Session-ID": f"s{sessions}"}, i % 4))
        sessions += 1
    for _ in range(4 * 100):  # 100 sessions of 4 turns in each of 32 slots, interleaved
        for i, (headers, turns) in enumerate(slots):
            block = transport._block(headers)
            assert _lines(block) == _lines(
                b"Authorization: Bearer k\r\nX-Session-ID: " + headers["X-Session-ID"].encode()
                + b"\r\nAccept: */*\r\nContent-Type: application/octet-stream\r\n")
            if turns + 1 < 4:
                slots[i] = (headers, turns + 1)
            else:
                slots[i] = ({"X-Session-ID": f"s{sessions}"}, 0)
                sessions += 1
    # Every session that ran, once (emptying the cache when full: 1.56 times each).
    assert len(builds) == len(set(builds)) >= 100 * 32
    assert len(transport._blocks) == lean.HEADER_BLOCKS_KEPT


_names = st.sampled_from(["Authorization", "authorization", "Accept", "content-type",
                          "Content-Type", "Host", "Content-Length", "X-Session-ID",
                          "x-session-id", "User-Agent"])
_values = st.text(st.characters(codec="ascii", exclude_characters="\r\n"), max_size=8)


@settings(max_examples=300, deadline=None)
@given(session=st.dictionaries(_names, _values, max_size=4),
       caller=st.dictionaries(_names, _values, max_size=3))
def test_a_callers_headers_send_what_merging_them_with_the_sessions_sends(
        session: dict[str, str], caller: dict[str, str]) -> None:
    """A caller's headers added to the session's block (the path of a session's own
    header) send the same lines as the session's headers merged with them and built
    again: a caller's header replaces the session's of that exact name, framing is the
    client's, and aiohttp's defaults apply to what neither gave."""
    transport = _started(session)
    merged = _lines(_header_block({**session, **caller}))
    assert _lines(transport._block(caller)) == merged
    # Made for many requests (a session's): the same lines, and the same mapping.
    for_many = transport.headers_with(caller)
    assert _lines(transport._block(for_many)) == merged and dict(for_many) == caller
    # Only the client that made it sends its bytes: another merges it with its own, and
    # so does the same client once started again with other headers.
    other = _started({"X-Other": "1"})
    assert _lines(other._block(for_many)) == _lines(
        _header_block({"X-Other": "1", **caller}))
    asyncio.run(transport.start(headers={"X-Other": "1"}))
    assert _lines(transport._block(for_many)) == _lines(
        _header_block({"X-Other": "1", **caller}))


def test_headers_made_for_many_requests_are_rendered_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from aiperf.transports import lean

    transport = _started({"Authorization": "Bearer k"})
    headers = transport.headers_with({"X-Session-ID": "s1"})
    renders: list[object] = []
    monkeypatch.setattr(lean, "_header_lines", lambda h: renders.append(h) or ([], set()))
    blocks = {transport._block(headers) for _ in range(10)}
    assert renders == [] and len(blocks) == 1
    assert b"X-Session-ID: s1\r\n" in blocks.pop()
    monkeypatch.undo()
    # What cannot be sent is refused when made, as any header is.
    for bad in ({"X-Session-ID": "s1\r\nInjected: 1"}, {"X-Session-ID": "s\n"},
                {"X-Bad:Name": "1"}, {"X-Bad\r\nName": "1"}):
        with pytest.raises(ValueError, match="cannot be sent"):
            transport.headers_with(bad)
