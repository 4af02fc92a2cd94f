"""Client figures (issue "Profile runs end to end"), each against a bare single-process
aiohttp+uvloop client measured in the same run on the same mock server (its own process):

1. max request throughput at concurrency 32, non-streaming and streaming (16 chunks);
2. client CPU per request over the whole mesh process tree;
3. TTFT p50 and ITL p50 with the mock injecting TTFT 20 ms and ITL 5 ms;
4. mesh memory during a long run (``--memory-requests``, 10,000 by default).

    .venv/bin/python benchmarks/client_throughput.py [--repeats 5] [--requests 10000] [--workers N]

``--cpu-breakdown`` prints only the CPU per request of each mesh process (worker,
record processor, records manager, ...), medians over ``--repeats`` runs, and one JSON
line of them. CPU time holds on a loaded box where throughput ratios are noise, so an A/B
of two checkouts alternates invocations of this script:

    PYTHONPATH=<checkout> .venv/bin/python benchmarks/client_throughput.py --cpu-breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time

from _common import (
    bare_client,
    cpu_by_kind,
    median,
    tree_cpu_seconds,
    tree_memory_mib,
    tree_union_rss_mib,
)

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess

CONCURRENCY = 32
TOKENS = 16
# Issue 9's figures: throughput against the bare client, and CPU of the whole mesh.
NON_STREAMING_RATIO = 0.95
STREAMING_RATIO = 0.85
CPU_MS_PER_REQUEST = 0.5


def pin(pid: int | None, cpu: int) -> None:
    if pid and hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(pid, {cpu})


def throughput(mesh: Mesh, url: str, requests: int, repeats: int) -> None:
    for streaming in (False, True):
        ratios, ours, bares, cpu_ms, bare_cpu_ms = [], [], [], [], []
        for repeat in range(repeats):
            # Alternate which client goes first: the box's speed drifts within seconds.
            if repeat % 2 == 0:
                bare = bare_client(url, CONCURRENCY, requests, streaming, TOKENS)
            assert mesh.pid is not None
            cpu0 = tree_cpu_seconds(mesh.pid)
            result = mesh.run(url=url, streaming=streaming, concurrency=CONCURRENCY,
                              request_count=requests, osl=TOKENS, isl=32)
            cpu1 = tree_cpu_seconds(mesh.pid)
            if repeat % 2 == 1:
                bare = bare_client(url, CONCURRENCY, requests, streaming, TOKENS)
            assert result.error_count == 0 and result.invariant["ok"]
            rps = result.metric("request_throughput")
            ours.append(rps)
            bares.append(bare.rps)
            ratios.append(rps / bare.rps)
            cpu_ms.append((cpu1 - cpu0) / requests * 1000)
            bare_cpu_ms.append(bare.cpu_s / requests * 1000)
        mode = "streaming    " if streaming else "non-streaming"
        target = STREAMING_RATIO if streaming else NON_STREAMING_RATIO
        print(f"{mode} c={CONCURRENCY}: mesh {median(ours):7.0f} req/s, bare {median(bares):7.0f}"
              f" req/s, ratio median {median(ratios):.2f} (target >= {target:.2f}) "
              f"[runs: {', '.join(f'{r:.2f}' for r in ratios)}]")
        print(f"{mode} CPU per request: mesh {median(cpu_ms):.2f} ms "
              f"(target < {CPU_MS_PER_REQUEST} ms), "
              f"bare {median(bare_cpu_ms):.2f} ms")


def cpu_breakdown(mesh: Mesh, url: str, requests: int, repeats: int,
                  modes: tuple[bool, ...]) -> None:
    for streaming in modes:
        samples: dict[str, list[float]] = {}
        for _ in range(repeats):
            before = cpu_by_kind(mesh)
            result = mesh.run(url=url, streaming=streaming, concurrency=CONCURRENCY,
                              request_count=requests, osl=TOKENS, isl=32)
            after = cpu_by_kind(mesh)
            assert result.error_count == 0 and result.invariant["ok"]
            total = 0.0
            for kind, seconds in after.items():
                us = (seconds - before.get(kind, 0.0)) / requests * 1e6
                samples.setdefault(kind, []).append(us)
                total += us
            samples.setdefault("total", []).append(total)
        mode = "streaming" if streaming else "non-streaming"
        figures = {kind: round(median(values), 1) for kind, values in samples.items()}
        print(f"{mode} CPU per request (us, median of {repeats}): "
              + ", ".join(f"{kind} {us:.1f}" for kind, us in figures.items()))
        print(json.dumps({"mode": mode, **figures}))


def latency(mesh: Mesh, repeats: int) -> None:
    with MockServerProcess(ttft_ms=20, itl_ms=5, tokens=TOKENS) as server:
        pin(server.pid, 0)
        d_ttft, d_itl = [], []
        for _ in range(repeats):
            bare = bare_client(server.url, CONCURRENCY, 600, True, TOKENS)
            result = mesh.run(url=server.url, streaming=True, concurrency=CONCURRENCY,
                              request_count=600, osl=TOKENS)
            d_ttft.append(result.metric("time_to_first_token.p50") - median(bare.ttft_ms))
            d_itl.append(result.metric("inter_token_latency.p50") - median(bare.itl_ms))
        print(f"TTFT p50 mesh - bare: median {median(d_ttft):+.2f} ms (target within 1 ms) "
              f"[{', '.join(f'{d:+.2f}' for d in d_ttft)}]")
        print(f"ITL  p50 mesh - bare: median {median(d_itl):+.3f} ms (target within 1 ms) "
              f"[{', '.join(f'{d:+.3f}' for d in d_itl)}]")


def memory(mesh: Mesh, url: str, requests: int) -> None:
    assert mesh.pid is not None
    samples: list[tuple[float, ...]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            union = tree_union_rss_mib(mesh.pid) or float("nan")  # type: ignore[arg-type]
            samples.append((*tree_memory_mib(mesh.pid), union))  # type: ignore[arg-type]
            time.sleep(0.5)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = mesh.run(url=url, streaming=True, concurrency=CONCURRENCY,
                          request_count=requests, osl=TOKENS, isl=32)
    finally:
        done.set()
        sampler.join()
    assert result.invariant["ok"]
    third = max(1, len(samples) // 3)
    peak_rss, peak_pss, peak_uss, peak_union = (max(s[i] for s in samples) for i in range(4))
    for name, i, peak in (("RSS, each page once", 3, peak_union), ("PSS summed", 1, peak_pss)):
        early = median([s[i] for s in samples[:third]])
        late = median([s[i] for s in samples[-third:]])
        print(f"memory over {requests} requests, {name}: peak {peak:.0f} MiB (target <= 250), "
              f"first third {early:.0f} -> last third {late:.0f} MiB")
    print(f"  (USS summed peak {peak_uss:.0f} MiB; RSS summed over processes, shared pages "
          f"counted once per process, peak {peak_rss:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--memory-requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: the mesh's own default)")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--cpu-breakdown", action="store_true",
                        help="only the CPU per request of each mesh process")
    parser.add_argument("--non-streaming-only", action="store_true")
    args = parser.parse_args()
    mesh_options = {"workers": args.workers} if args.workers else {}
    with MockServerProcess(tokens=TOKENS) as server, Mesh(**mesh_options) as mesh:
        pin(server.pid, 0)
        mesh.run(url=server.url, concurrency=CONCURRENCY, request_count=500)  # warm up
        if args.cpu_breakdown:
            modes = (False,) if args.non_streaming_only else (False, True)
            cpu_breakdown(mesh, server.url, args.requests, args.repeats, modes)
            return
        throughput(mesh, server.url, args.requests, args.repeats)
        if args.memory_requests:
            memory(mesh, server.url, args.memory_requests)
        if not args.skip_latency:
            latency(mesh, args.repeats)


if __name__ == "__main__":
    main()
