"""The mock server over real HTTP: routes, formats and faults."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from aiperf.mock_server import MockServerProcess, MockServerThread


def post(url: str, body: dict, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_health_models_and_loopback_binding() -> None:
    with MockServerThread() as server:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url + "/health") as response:
            assert json.loads(response.read()) == {"status": "ok"}
        with urllib.request.urlopen(server.url + "/v1/models") as response:
            assert json.loads(response.read())["data"][0]["id"] == "mock-model"


def test_a_chat_stream_looks_like_a_real_servers() -> None:
    with MockServerThread(tokens=3) as server:
        status, headers, body = post(server.url + "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "a b"}], "stream": True,
            "stream_options": {"include_usage": True}})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:4]] == [
        " alpha", " bravo", " charlie"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert chunks[-1]["usage"]["prompt_tokens"] == 2


@pytest.mark.real_sleep
def test_latency_model_delays_first_token() -> None:
    with MockServerThread(latency_ms=120) as server:
        started = time.monotonic()
        status, _, _ = post(server.url + "/v1/completions", {"prompt": "x", "max_tokens": 2})
        assert status == 200 and time.monotonic() - started >= 0.12


def test_rate_limit_answers_429_with_retry_after() -> None:
    with MockServerThread(fault="rate_limit", retry_after_seconds=3) as server:
        status, headers, body = post(server.url + "/v1/chat/completions", {"messages": []})
    assert status == 429 and headers["Retry-After"] == "3"
    assert json.loads(body)["error"]["type"] == "rate_limit_exceeded"


def test_error_rate_uses_the_chosen_codes() -> None:
    with MockServerThread(error_rate=1.0, error_codes=[502]) as server:
        assert post(server.url + "/v1/embeddings", {"input": "x"})[0] == 502


def test_the_cli_server_serves_until_stopped() -> None:
    with MockServerProcess(tokens=2) as server:
        status, _, body = post(server.url + "/v1/completions", {"prompt": "x"})
        assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 2
