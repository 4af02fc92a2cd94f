"""The worker through a whole mesh: a slot that raises yields an error record and goes on,
requests the client gives up on are errors, and credentials never reach a stored error."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from aiperf.common.codec import RawRecord
from aiperf.dataset.models import Turn
from aiperf.endpoints.chat import ChatEndpoint
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult
from tests.harness import mock_plugin
from tests.integration.services.servers import reference_server, response

RUN_LIMIT_S = 10  # "finishes in seconds": far below any request or run timeout


class RefusesMarkedPrompts(ChatEndpoint):
    """A plugin whose payload() raises for every prompt that says ``fail``."""

    def payload(self, turn: Turn) -> dict[str, Any]:
        if "fail" in turn.text:
            raise ValueError(f"payload refused: {turn.text}")
        return super().payload(turn)


class AlwaysRaises(ChatEndpoint):
    def payload(self, turn: Turn) -> dict[str, Any]:
        raise RuntimeError("this plugin always raises")


class BrokenTransport:
    """A transport plugin with a bug: every send raises."""

    def __init__(self, timeout_seconds: float, max_connections: int) -> None:
        self.timeout_seconds = timeout_seconds

    async def start(self, headers: Mapping[str, str] | None = None) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, record: RawRecord, url: str, headers: dict[str, str], body: bytes,
                   streaming: bool) -> None:
        raise KeyError("transport bug")


def chat_metadata() -> dict[str, Any]:
    return plugins.get_metadata(PluginType.ENDPOINT, "chat").model_dump()


def accounted(result: ProfileResult, sent: int) -> None:
    assert result.invariant["ok"], result.invariant
    assert result.invariant["credits_issued"] == sent == len(result.records)
    assert result.request_count + result.error_count == sent


@pytest.fixture(scope="module")
def server() -> Iterator[MockServerProcess]:
    with MockServerProcess(tokens=2) as running:
        yield running


def test_a_plugin_that_raises_on_every_third_request_fails_exactly_those(
    server: MockServerProcess, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("\n".join(
        json.dumps({"text": f"prompt {i}" + (" fail" if i % 3 == 2 else ""),
                    "output_length": 2}) for i in range(30)))
    with mock_plugin(PluginType.ENDPOINT, "refuses-marked", RefusesMarkedPrompts,
                     chat_metadata()), Mesh(workers=2) as mesh:
        started = time.monotonic()
        result = mesh.run(url=server.url, endpoint_type="refuses-marked", input_file=str(
            prompts), concurrency=2, request_count=30)
        elapsed = time.monotonic() - started
    accounted(result, 30)
    assert (result.request_count, result.error_count) == (20, 10)
    failed = sorted(r["error"]["message"] for r in result.records if "error" in r)
    assert failed == sorted(f"payload refused: prompt {i} fail" for i in range(2, 30, 3))
    assert {r["error"]["type"] for r in result.records if "error" in r} == {"ValueError"}
    assert elapsed < RUN_LIMIT_S


def test_a_slot_that_always_raises_finishes_ten_requests_in_seconds(
    server: MockServerProcess,
) -> None:
    with mock_plugin(PluginType.ENDPOINT, "always-raises", AlwaysRaises, chat_metadata()), \
            Mesh(workers=1) as mesh:
        started = time.monotonic()
        result = mesh.run(url=server.url, endpoint_type="always-raises", concurrency=1,
                          request_count=10)
        elapsed = time.monotonic() - started
    accounted(result, 10)
    assert result.error_count == 10 and result.request_count == 0
    assert result.error_summary == [{"error_details": {
        "code": None, "type": "RuntimeError", "message": "this plugin always raises"},
        "count": 10}]
    assert elapsed < RUN_LIMIT_S


def test_a_transport_that_raises_gives_error_records_and_the_run_ends() -> None:
    with mock_plugin(PluginType.TRANSPORT, "broken", BrokenTransport, {"schemes": ["broken"]}), \
            Mesh(workers=1) as mesh:
        started = time.monotonic()
        result = mesh.run(url="broken://127.0.0.1:1", concurrency=2, request_count=6)
        elapsed = time.monotonic() - started
    accounted(result, 6)
    assert result.error_count == 6
    assert {e["error_details"]["type"] for e in result.error_summary} == {"KeyError"}
    assert elapsed < RUN_LIMIT_S


# -- requests the client gives up on ------------------------------------------------------


async def never_answer(head: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


def test_a_server_that_never_answers_fails_every_request_of_a_duration_run(
    mesh: Mesh,
) -> None:
    with reference_server(never_answer) as url:
        result = mesh.run(url=url, concurrency=2, benchmark_duration=1.0,
                          benchmark_grace_period=0.3)
    sent = result.invariant["credits_issued"]
    accounted(result, sent)
    assert sent >= 2 and result.request_count == 0 and result.error_count == sent
    assert result.metric("request_error_rate") == 100.0
    assert result.was_cancelled
    details = [e["error_details"] for e in result.error_summary]
    assert {(d["code"], d["type"]) for d in details} == {(499, "RequestCancellationError")}
    assert all(r["metadata"]["was_cancelled"] for r in result.records)


def test_the_first_byte_timeout_fails_silent_requests_through_the_mesh(mesh: Mesh) -> None:
    with reference_server(never_answer) as url:
        started = time.monotonic()
        result = mesh.run(url=url, concurrency=2, request_count=4,
                          request_first_byte_timeout_seconds=0.3)
        elapsed = time.monotonic() - started
    accounted(result, 4)
    assert result.error_count == 4
    (summary,) = result.error_summary
    assert summary["error_details"]["code"] == 499
    assert summary["error_details"]["message"].startswith("first-byte timeout")
    assert elapsed < RUN_LIMIT_S


# -- credentials ----------------------------------------------------------------------------


async def echo_credentials(head: bytes, writer: asyncio.StreamWriter) -> None:
    # An error body that repeats what it was sent, as some gateways do.
    echoed = b"; ".join(line for line in head.split(b"\r\n")
                        if line.lower().startswith((b"authorization", b"x-api-key")))
    writer.write(response(b'{"error": "rejected: ' + echoed + b'"}', b"401 Unauthorized"))
    await writer.drain()


def test_an_error_body_that_echoes_the_api_key_is_scrubbed(mesh: Mesh) -> None:
    key, other = "sk-test-0123456789", "gateway-secret-42"
    with reference_server(echo_credentials) as url:
        result = mesh.run(url=url, concurrency=1, request_count=2, api_key=key,
                          headers={"X-Api-Key": other})
    accounted(result, 2)
    (summary,) = result.error_summary
    message = summary["error_details"]["message"]
    assert summary["error_details"]["code"] == 401
    assert key not in message and other not in message and "***" in message
    assert key not in json.dumps(list(result.records))
