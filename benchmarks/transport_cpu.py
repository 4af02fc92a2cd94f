"""The HTTP transport's own CPU per request, phase timing on and off, in one process.

CPU time (not throughput) so that it holds on a busy machine: 32 slots send through one
``HttpTransport`` on uvloop to the mock server (its own process, pinned away), and the
process's CPU seconds per request are compared; rounds alternate the variants, medians are
printed. What the phase timing costs per request is the difference. The lean client
(``transports/lean.py``, phases always on) is measured the same way, in the same rounds.

    .venv/bin/python benchmarks/transport_cpu.py [--requests 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import uvloop
from _common import bare_client, median

from aiperf.common.codec import RawRecord
from aiperf.mock_server import MockServerProcess
from aiperf.transports.http import HttpTransport
from aiperf.transports.lean import LeanHttpTransport

CONCURRENCY = 32
TOKENS = 16


async def cpu_per_request_us(url: str, requests: int, streaming: bool, phases: bool,
                             lean: bool = False) -> float:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello " * 32}],
                       "max_completion_tokens": TOKENS, "stream": streaming}).encode()
    headers = {"Content-Type": "application/json"}
    kind = LeanHttpTransport if lean else HttpTransport
    transport = kind(60.0, CONCURRENCY, trace_phases=phases)
    await transport.start(headers=headers)
    target = url + "/v1/chat/completions"
    remaining = requests

    async def slot() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            record = RawRecord(0, 0, "w", 0, time.perf_counter_ns(), 0, 0, 0, 0, 0, [])
            await transport.send(record, target, headers, body, streaming)
            assert record.error is None, record.error

    try:
        await asyncio.gather(*(slot() for _ in range(CONCURRENCY)))  # warm the pool
        remaining = requests
        cpu0 = time.process_time()
        await asyncio.gather(*(slot() for _ in range(CONCURRENCY)))
        return (time.process_time() - cpu0) / requests * 1e6
    finally:
        await transport.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with MockServerProcess(tokens=TOKENS) as server:
        if server.pid and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(server.pid, {0})
            os.sched_setaffinity(0, {1})
        for streaming in (False, True):
            samples: dict[bool, list[float]] = {False: [], True: []}
            lean: list[float] = []
            for round_ in range(args.rounds):
                for phases in ((False, True) if round_ % 2 == 0 else (True, False)):
                    samples[phases].append(uvloop.run(
                        cpu_per_request_us(server.url, args.requests, streaming, phases)))
                lean.append(uvloop.run(
                    cpu_per_request_us(server.url, args.requests, streaming, True, lean=True)))
            bare = median([bare_client(server.url, CONCURRENCY, args.requests, streaming,
                                       TOKENS).cpu_s / args.requests * 1e6
                           for _ in range(args.rounds)])
            off, on = median(samples[False]), median(samples[True])
            mode = "streaming    " if streaming else "non-streaming"
            print(f"{mode} transport CPU per request: phases off {off:6.1f} us, "
                  f"on {on:6.1f} us, phase timing {on - off:+5.1f} us "
                  f"[on: {', '.join(f'{s:.1f}' for s in samples[True])}]; "
                  f"bare aiohttp loop {bare:6.1f} us; lean client {median(lean):6.1f} us "
                  f"[{', '.join(f'{s:.1f}' for s in lean)}]")


if __name__ == "__main__":
    main()
