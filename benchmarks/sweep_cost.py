"""CPU time and peak memory of the time-weighted sweep metrics (``effective_concurrency``,
``tokens_in_flight``: ``aiperf.metrics.parity.result_sweep_metrics``, run by
``ProfileResult.from_dict`` at the end of every exact-mode run) on synthetic streamed runs,
against the whole-array sweep it replaced (``reference_sweep`` in
``tests/unit/metrics/test_parity_sweep_bounded.py``).

    .venv/bin/python benchmarks/sweep_cost.py [--requests 100000 1000000] [--tokens 16]
                                              [--concurrency 64] [--no-reference]

The synthetic run: a closed loop of ``--concurrency`` slots, each request 20 to 32 ms to
its first token then ``--tokens`` - 1 chunks 1.5 to 2.5 ms apart, the records in the order
they ended (as the records manager receives them); its chunk gaps and their record index
in the result's own form (``MetricResult`` with the repeated index the result builds).
Each sweep runs once under ``tracemalloc`` (numpy reports its buffers to it): printed, the
CPU seconds, the peak of allocations while it ran (bytes a request) and the largest
difference between the two sweeps' statistics. No thresholds: figures to read.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiperf.metrics.definitions import NS_PER_MS
from aiperf.metrics.parity import result_sweep_metrics
from aiperf.results import MetricResult, Timeline, _RepeatedIndex


def synthetic_run(requests: int, tokens: int, concurrency: int, seed: int = 7) -> Any:
    """What ``result_sweep_metrics`` reads of a result: its timeline and the TTFT and
    inter-chunk latency metrics, the values in ms, for a streamed closed-loop run."""
    rng = np.random.default_rng(seed)
    ttft_ms = rng.uniform(20.0, 32.0, requests)
    gaps_ms = rng.uniform(1.5, 2.5, (requests, tokens - 1))
    length_ns = np.round((ttft_ms + gaps_ms.sum(axis=1)) * NS_PER_MS).astype(np.int64)
    slot = np.arange(requests) % concurrency
    # Back to back in each slot, 20 to 80 us of the client's own path between requests.
    step = length_ns + rng.integers(20_000, 80_000, requests)
    start = np.empty(requests, dtype=np.int64)
    for s in range(concurrency):
        mine = slot == s
        start[mine] = 10**12 + np.cumsum(step[mine]) - step[mine]
    end = start + length_ns
    order = np.argsort(end, kind="stable")  # the records manager sees them as they end
    start, end = start[order], end[order]
    ttft_ms, gaps_ms = ttft_ms[order], gaps_ms[order]
    count = np.full(requests, tokens - 1, dtype=np.uint32)
    every = np.arange(requests, dtype=np.int32)
    timeline = Timeline(start, end, np.ones(requests, dtype=bool),
                        np.full(requests, tokens, dtype=np.int32),
                        np.full(requests, 100, dtype=np.int32),
                        np.full(requests, -1, dtype=np.int8))
    metrics = {
        "time_to_first_token": MetricResult("time_to_first_token", "ms", {}, ttft_ms,
                                            record_index=every),
        "inter_chunk_latency": MetricResult("inter_chunk_latency", "ms", {},
                                            gaps_ms.ravel(),
                                            record_index=_RepeatedIndex(every, count)),
    }
    return SimpleNamespace(timeline=timeline, metrics=metrics)


def reference(run: Any) -> dict[str, dict[str, Any]]:
    """The whole-array sweep, fed as ``result_sweep_metrics`` fed it before (the full
    first-token array, the chunk gaps in ns and their expanded record index)."""
    from tests.unit.metrics.test_parity_sweep_bounded import reference_sweep

    timeline = run.timeline
    ttft, icl = run.metrics["time_to_first_token"], run.metrics["inter_chunk_latency"]
    first = np.full(len(timeline), np.nan)
    index = np.asarray(ttft.record_index)
    first[index] = timeline.start_ns[index] + np.asarray(ttft.values) * NS_PER_MS
    gaps = (np.asarray(icl.values) * NS_PER_MS,
            np.repeat(icl.record_index._index, icl.record_index._counts))
    return reference_sweep(timeline.start_ns, timeline.end_ns, first, timeline.isl,
                           timeline.osl, gaps)


def measure(sweep: Callable[[Any], dict[str, dict[str, Any]]],
            run: Any) -> tuple[float, int, dict[str, dict[str, Any]]]:
    gc.collect()
    tracemalloc.start()
    cpu = time.process_time()
    out = sweep(run)
    cpu = time.process_time() - cpu
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return cpu, peak, out


def largest_difference(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> str:
    worst = (0.0, "")
    for tag in a.keys() | b.keys():
        for name in a.get(tag, {}).keys() | b.get(tag, {}).keys():
            x, y = a.get(tag, {}).get(name), b.get(tag, {}).get(name)
            if isinstance(x, str) or isinstance(y, str):
                continue
            if x is None or y is None:
                return f"{tag}.{name} only in one"
            rel = abs(x - y) / max(abs(x), abs(y), 1e-300)
            if rel >= worst[0]:
                worst = (rel, f"{tag}.{name} {x:.9g} vs {y:.9g}")
    return f"largest relative difference {worst[0]:.2e} ({worst[1]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--no-reference", action="store_true",
                        help="time the bounded sweep only (the reference takes ~2 KB a "
                             "request: 2 GB at a million)")
    args = parser.parse_args()
    result_sweep_metrics(synthetic_run(1000, args.tokens, 8))  # imports, first-call costs
    for requests in args.requests:
        run = synthetic_run(requests, args.tokens, args.concurrency)
        cpu, peak, mine = measure(result_sweep_metrics, run)
        print(f"{requests:>9,} requests  bounded   {cpu:6.2f} s CPU  peak "
              f"{peak / 2**20:8.1f} MiB ({peak / requests:7.1f} B a request)", flush=True)
        if args.no_reference:
            continue
        cpu_ref, peak_ref, ref = measure(reference, run)
        print(f"{requests:>9,} requests  reference {cpu_ref:6.2f} s CPU  peak "
              f"{peak_ref / 2**20:8.1f} MiB ({peak_ref / requests:7.1f} B a request)")
        print(f"{'':>20}bounded/reference: CPU x{cpu / cpu_ref:.2f}, memory "
              f"x{peak / peak_ref:.3f}; {largest_difference(mine, ref)}", flush=True)


if __name__ == "__main__":
    main()
