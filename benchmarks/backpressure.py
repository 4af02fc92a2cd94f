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

``--stall S``: sketch mode's bound, at the highest rate this machine drives. A duration
run in sketch mode (c=64, ``--osl`` tokens, zero-latency mock) whose record processor (or,
``--stall-service records_manager``, records manager) is stopped (SIGSTOP) for S seconds
after 8 s: whatever the record path would hold, it holds then. Printed: each process's
peak PSS (``/proc/<pid>/smaps_rollup``), the tree's, the run's request rate, and each
record-path service's largest backlog (``ProfileResult.record_backlog``: batches, records
and bytes queued at once; for a record processor also the longest a record waited from its
request's end to its parsing). A larger ``--osl`` makes larger records, so batches that
would be larger, with the same bound.

    .venv/bin/python benchmarks/backpressure.py --stall 8 [--osl 16] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
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


def measure(url: str, hwm: int, requests: int
            ) -> tuple[Peaks, float, bool, int, float, dict[str, float]]:
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
    return (peaks, elapsed, bool(result.invariant["ok"]), result.request_count, throughput,
            result.record_backlog.get("record_processor_0", {}))


def backlog_lines(backlog: dict[str, dict[str, float]]) -> list[str]:
    """One line per record-path service: its largest backlog of the run."""
    lines = []
    for name, seen in backlog.items():
        line = (f"  {name:<22} backlog {seen.get('batches', 0):5.0f} batches "
                f"{seen.get('records', 0):7.0f} records {seen.get('bytes', 0) / MIB:7.2f} MiB")
        if "max_lag_ms" in seen:
            line += f", longest wait {seen['max_lag_ms'] / 1000:6.2f} s"
        lines.append(line)
    return lines


def pss_bytes(pid: int) -> int | None:
    """PSS of one process: forked services share most pages, and PSS splits them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def stall(args: argparse.Namespace) -> None:
    """A sketch-mode duration run with one service stopped for a while (module doc)."""
    with MockServerProcess(tokens=args.osl) as server, Mesh() as mesh:
        assert mesh.pid is not None
        pids = {"controller": mesh.pid, **mesh.services}
        victim = next(pid for name, pid in mesh.services.items()
                      if name.startswith(args.stall_service))
        peaks: dict[str, int] = {}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                tree = 0
                for name, pid in pids.items():
                    value = pss_bytes(pid)
                    if value is not None:
                        tree += value
                        peaks[name] = max(peaks.get(name, 0), value)
                peaks["whole tree"] = max(peaks.get("whole tree", 0), tree)
                stop.wait(0.2)

        def pause() -> None:
            if stop.wait(8.0):
                return
            os.kill(victim, signal.SIGSTOP)
            try:
                stop.wait(args.stall)
            finally:
                os.kill(victim, signal.SIGCONT)

        threads = [threading.Thread(target=sample, daemon=True),
                   threading.Thread(target=pause, daemon=True)]
        for thread in threads:
            thread.start()
        try:
            result = mesh.run(url=server.url, streaming=True, concurrency=64, osl=args.osl,
                              benchmark_duration=args.seconds, sketch=True)
        finally:
            stop.set()
            for thread in threads:
                thread.join(args.stall + 10)
    print(f"sketch mode, {args.seconds:g} s at c=64, osl {args.osl}, {args.stall_service} "
          f"stopped for {args.stall:g} s after 8 s: {result.request_count:,} requests, "
          f"{result['request_throughput'].avg:,.0f} req/s, invariant "
          f"{'ok' if result.invariant['ok'] else 'BROKEN'}")
    for name in sorted(peaks, key=lambda n: (n == "whole tree", n)):
        print(f"  {name:<22} peak PSS {peaks[name] / MIB:7.1f} MiB")
    print("largest backlog at once (record_hwm "
          f"{ServiceConfig.model_fields['record_hwm'].default} batches at each end):")
    for line in backlog_lines(result.record_backlog):
        print(line)
    for warning in result.warnings:
        if "fell behind" in warning:
            print(f"  flagged: {warning}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--slow-ms", type=float, default=1.5)
    parser.add_argument("--hwm", default="",
                        help="comma-separated record_hwm values (default: 0 and the default)")
    parser.add_argument("--stall", type=float, default=0.0,
                        help="seconds to stop a service in a sketch-mode run (module doc)")
    parser.add_argument("--stall-service", default="record_processor",
                        choices=["record_processor", "records_manager"])
    parser.add_argument("--osl", type=int, default=16, help="--stall: tokens per response")
    parser.add_argument("--seconds", type=float, default=30.0, help="--stall: run length")
    args = parser.parse_args()
    if args.stall:
        stall(args)
        return
    os.environ["AIPERF_SLOW_RECORD_MS"] = str(args.slow_ms)
    bounded = ServiceConfig.model_fields["record_hwm"].default
    print(f"{args.requests} streamed requests (64 tokens), c=16, 1 worker, 1 record "
          f"processor sleeping {args.slow_ms} ms per record\n")
    print(f"{'record_hwm':>12} {'peak mesh RSS':>14} {'processor':>10} {'worker':>8} "
          f"{'run s':>7} {'req/s':>7} {'records':>8} {'invariant':>9} "
          f"{'processor backlog':>18}")
    with MockServerProcess(tokens=64) as server, plugins.registered(
        PluginType.SERVICE, "record_processor", SlowRecordProcessor
    ):
        values = [int(v) for v in args.hwm.split(",")] if args.hwm else [0, bounded]
        for hwm in values:
            peaks, elapsed, ok, count, rps, backlog = measure(server.url, hwm,
                                                              args.requests)
            label = "0 (before)" if hwm == 0 else f"{hwm}" + (" (after)" if hwm == bounded
                                                               else "")
            print(f"{label:>12} {peaks.total_mib:>10.0f} MiB "
                  f"{peaks.by_service.get('record_processor_0', 0):>6.0f} MiB "
                  f"{peaks.by_service.get('worker_0', 0):>4.0f} MiB {elapsed:>7.1f} "
                  f"{rps:>7.0f} {count:>8} {'ok' if ok else 'BROKEN':>9} "
                  f"{backlog.get('batches', 0):>5.0f} b {backlog.get('records', 0):>6.0f} r")


if __name__ == "__main__":
    main()
