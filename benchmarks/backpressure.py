"""Backpressure on the record path: peak memory of the mesh when its record processor is
slower than the workers, with the record path unbounded (``record_hwm=0``, the behaviour
before it had high-water marks) and bounded (the default).

A streaming run against a zero-latency mock server; the processor sleeps
``--slow-ms`` per record. Unbounded, every record the processor has not reached waits in
its receive queue (its memory grows with the backlog). Bounded, the worker stops starting
requests while its records cannot leave, and the backlog, so the memory, stays small.
The run also checks that no record was lost (the credit invariant) either way, and
prints the request throughput the run measured (``request_throughput``: what a slower
worker would show).

    .venv/bin/python benchmarks/backpressure.py [--requests 6000] [--slow-ms 1.5]
        [--hwm 0,8,128]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from aiperf.common.config import ServiceConfig
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess

# The slowed processor is the tests' (tests/harness): the mesh imports it by module path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aiperf.plugin import PluginType, plugins
from tests.harness.slow_processor import SlowRecordProcessor

MIB = 1024 * 1024


@dataclass
class Peaks:
    total_mib: float = 0.0
    by_service: dict[str, float] = field(default_factory=dict)


def sample(pid_by_name: dict[str, int], peaks: Peaks, stop: threading.Event) -> None:
    processes = {name: psutil.Process(pid) for name, pid in pid_by_name.items()}
    while not stop.is_set():
        total = 0.0
        for name, proc in processes.items():
            try:
                rss = proc.memory_info().rss / MIB
            except psutil.NoSuchProcess:
                continue
            total += rss
            peaks.by_service[name] = max(peaks.by_service.get(name, 0.0), rss)
        peaks.total_mib = max(peaks.total_mib, total)
        stop.wait(0.05)


def measure(url: str, hwm: int, requests: int) -> tuple[Peaks, float, bool, int, float]:
    with Mesh(workers=1, record_processors=1, record_hwm=hwm) as mesh:
        assert mesh.pid is not None
        pids = {"controller": mesh.pid, **mesh.services}
        peaks, stop = Peaks(), threading.Event()
        sampler = threading.Thread(target=sample, args=(pids, peaks, stop), daemon=True)
        sampler.start()
        started = time.perf_counter()
        result = mesh.run(url=url, streaming=True, concurrency=16, request_count=requests,
                          osl=64)
        elapsed = time.perf_counter() - started
        stop.set()
        sampler.join()
    throughput = result["request_throughput"].avg
    return peaks, elapsed, bool(result.invariant["ok"]), result.request_count, throughput


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--slow-ms", type=float, default=1.5)
    parser.add_argument("--hwm", default="",
                        help="comma-separated record_hwm values (default: 0 and the default)")
    args = parser.parse_args()
    os.environ["AIPERF_SLOW_RECORD_MS"] = str(args.slow_ms)
    bounded = ServiceConfig.model_fields["record_hwm"].default
    print(f"{args.requests} streamed requests (64 tokens), c=16, 1 worker, 1 record "
          f"processor sleeping {args.slow_ms} ms per record\n")
    print(f"{'record_hwm':>12} {'peak mesh RSS':>14} {'processor':>10} {'worker':>8} "
          f"{'run s':>7} {'req/s':>7} {'records':>8} {'invariant':>9}")
    with MockServerProcess(tokens=64) as server, plugins.registered(
        PluginType.SERVICE, "record_processor", SlowRecordProcessor
    ):
        values = [int(v) for v in args.hwm.split(",")] if args.hwm else [0, bounded]
        for hwm in values:
            peaks, elapsed, ok, count, rps = measure(server.url, hwm, args.requests)
            label = "0 (before)" if hwm == 0 else f"{hwm}" + (" (after)" if hwm == bounded
                                                               else "")
            print(f"{label:>12} {peaks.total_mib:>10.0f} MiB "
                  f"{peaks.by_service.get('record_processor_0', 0):>6.0f} MiB "
                  f"{peaks.by_service.get('worker_0', 0):>4.0f} MiB {elapsed:>7.1f} "
                  f"{rps:>7.0f} {count:>8} {'ok' if ok else 'BROKEN':>9}")


if __name__ == "__main__":
    main()
