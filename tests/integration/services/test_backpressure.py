"""A record processor that falls behind holds the workers back without distorting what
they measure: requests in flight keep true timestamps, new ones wait."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from aiperf.mesh import Mesh
from aiperf.plugin import PluginType, plugins
from tests.harness.slow_processor import DELAY_ENV, SlowRecordProcessor
from tests.integration.services.servers import reference_server, response

SERVER_MS = 50
# Large enough (256 KB) that a few batches fill the socket's buffers and the HWM bites.
BODY = json.dumps({"choices": [{"message": {"content": "a b"}}], "padding": "x" * 256_000,
                   "usage": {"prompt_tokens": 2, "completion_tokens": 2}}).encode()


async def answer_after_50_ms(head: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(SERVER_MS / 1000)
    writer.write(response(BODY))
    await writer.drain()


def test_a_processor_behind_slows_the_run_but_not_the_measured_latency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each record derived 15 ms late: about a third of the pace of the requests below.
    monkeypatch.setenv(DELAY_ENV, "15")
    with reference_server(answer_after_50_ms) as url, \
            plugins.registered(PluginType.SERVICE, "record_processor", SlowRecordProcessor), \
            Mesh(workers=1, record_hwm=1) as mesh:
        started = time.monotonic()
        result = mesh.run(url=url, concurrency=8, request_count=120)
        elapsed = time.monotonic() - started
    assert result.invariant["ok"] and result.request_count == 120
    # The processor needs 120 x 15 ms = 1.8 s: the run was held back to its pace...
    assert elapsed >= 1.5
    starts = sorted(r["metadata"]["request_start_ns"] for r in result.records)
    assert (starts[-1] - starts[0]) / 1e6 > 120 * SERVER_MS / 8 * 1.2  # slower than free
    # ... while every request still measured the server's 50 ms, not the worker's waits.
    latency = result["request_latency"]
    assert latency.min >= SERVER_MS - 1
    # (A worker whose send blocked at the HWM froze its loop: p90 was about 200 ms.)
    assert latency.p90 < SERVER_MS + 20, latency.stats
    assert result["credit_to_start_latency"].max > 20  # the waiting shows as queueing
