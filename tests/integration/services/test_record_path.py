"""Worker -> record processor -> records manager against servers of known timing: the
numbers that come out are the ones the server was built to produce."""

from __future__ import annotations

import asyncio
import json

import pytest

from aiperf.mesh import Mesh
from tests.integration.services.servers import reference_server, response

BODY = json.dumps({"choices": [{"message": {"content": "one two three"}}],
                   "usage": {"prompt_tokens": 4, "completion_tokens": 3}}).encode()


async def body_after_200_ms(head: bytes, writer: asyncio.StreamWriter) -> None:
    whole = response(BODY)
    cut = whole.index(b"\r\n\r\n") + 4
    writer.write(whole[:cut])
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.write(whole[cut:])
    await writer.drain()


def test_a_body_sent_200_ms_after_its_headers_measures_200_ms(mesh: Mesh) -> None:
    with reference_server(body_after_200_ms) as url:
        result = mesh.run(url=url, concurrency=2, request_count=6)
    assert result.request_count == 6, result.error_summary
    assert 195 <= result["request_latency"].p50 < 300
    assert result["http_req_receiving"].p50 >= 190      # headers -> last byte
    assert result["http_req_waiting"].p50 < 100
    duration = result["http_req_duration"].values
    assert list(duration) == pytest.approx(list(result["request_latency"].values), abs=1e-6)


def chunk(delta: dict[str, str] | None = None, **extra: object) -> bytes:
    payload = {"choices": [{"delta": delta}] if delta is not None else [], **extra}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def reasoning_stream(field: str):  # type: ignore[no-untyped-def]
    async def answer(head: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")

        async def send(data: bytes) -> None:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()

        await asyncio.sleep(0.02)
        for i in range(10):  # ten thinking tokens, 10 ms apart
            await send(chunk({field: f" t{i}"}))
            await asyncio.sleep(0.01)
        for i in range(5):  # then five answer tokens
            await send(chunk({"content": f" a{i}"}))
            if i < 4:
                await asyncio.sleep(0.01)
        await send(chunk(usage={"prompt_tokens": 3, "completion_tokens": 15,
                                "completion_tokens_details": {"reasoning_tokens": 10}})
                   + b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return answer


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_reasoning_stream_measures_every_token(mesh: Mesh, field: str) -> None:
    with reference_server(reasoning_stream(field)) as url:
        result = mesh.run(url=url, streaming=True, concurrency=1, request_count=4)
    assert result.request_count == 4, result.error_summary
    # First chunk at 20 ms; first answer token after ten more 10 ms gaps: ~120 ms. The
    # upper bounds leave room for a busy machine's late timers (and still fail the old
    # numbers: TTFT 128 ms, ITL 3.2 ms).
    assert 19 <= result["time_to_first_token"].p50 < 60
    assert 115 <= result["time_to_first_output_token"].p50 < 250
    assert 9 <= result["inter_token_latency"].p50 < 20
    assert result["output_sequence_length"].avg == 15
    assert result["reasoning_token_count"].avg == 10
    assert result["output_token_count"].avg == 5
    assert result.metric("total_reasoning_tokens") == 40
    assert result.metric("total_output_tokens") == 20
