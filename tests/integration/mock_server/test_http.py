"""The mock's HTTP/1.1 layer over a raw socket: order, framing, bad input."""

from __future__ import annotations

import json
import socket

from aiperf.mock_server import MockServerThread
from aiperf.mock_server.responders import RequestPlan, Responder


def exchange(url: str, payload: bytes, until: bytes, timeout: float = 5) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while data.count(until) < 1:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def post(path: str, body: dict, extra: str = "") -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n{extra}\r\n").encode() + raw


def test_pipelined_requests_are_answered_in_order_on_one_connection() -> None:
    with MockServerThread(tokens=2) as server:
        data = exchange(server.url, b"".join([
            post("/v1/completions", {"prompt": "a", "stream": True}),
            post("/v1/completions", {"prompt": "b", "max_tokens": 3}),
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        ]), until=b'{"status":"ok"}')
    stream_end = data.index(b"data: [DONE]")
    whole = data.index(b'"completion_tokens":3')
    assert data.startswith(b"HTTP/1.1 200 OK") and b"Transfer-Encoding: chunked" in data
    assert stream_end < whole < data.index(b'{"status":"ok"}')


def test_expect_100_continue_is_answered_before_the_body() -> None:
    with MockServerThread(tokens=1) as server:
        request = post("/v1/completions", {"prompt": "x" * 2000}, "Expect: 100-continue\r\n")
        head, body = request.split(b"\r\n\r\n", 1)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(head + b"\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(body)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK")


def test_a_malformed_request_gets_400_and_a_closed_connection() -> None:
    with MockServerThread() as server:
        data = exchange(server.url, b"NOT HTTP AT ALL\r\n\r\n", until=b"\x00")
    assert data.startswith(b"HTTP/1.1 400 Bad Request") and b"Connection: close" in data


def test_unknown_routes_and_methods_are_404_with_a_json_error() -> None:
    with MockServerThread() as server:
        data = exchange(server.url, b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n",
                        until=b"}}")
    assert data.startswith(b"HTTP/1.1 404 Not Found")
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "not_found"


class BrokenResponder(Responder):
    path = "/v1/broken"

    def parse(self, body: dict, default_tokens: int) -> RequestPlan:
        raise ValueError("no plan for you")


def test_a_responder_that_raises_answers_500_naming_the_error() -> None:
    with MockServerThread(responders=[BrokenResponder()]) as server:
        data = exchange(server.url, post("/v1/broken", {}), until=b"}}")
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error")
    message = json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["message"]
    assert message == "mock responder failed: ValueError: no plan for you"
