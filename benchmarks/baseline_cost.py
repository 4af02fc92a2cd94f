"""What storing and comparing baselines cost per test at 10,000 requests (targets: save +
compare <= 100 ms a test; a stored test <= 1 MiB; <= 20 bytes per request per metric).

    .venv/bin/python benchmarks/baseline_cost.py [--requests 10000] [--repeats 5] [--synthetic]

By default the two runs come from the real engine: a streaming chat profile against the mock
server (TTFT 20 +- 5 ms, ITL 1 +- 0.3 ms, 16 output tokens, 1 % errors, concurrency 32), so
the values have a real run's noise, which is what decides how well they compress.
``--synthetic`` builds them from synthetic records instead (no mesh; fewer metrics: no HTTP
phases). What is timed, median of the repeats, is what the pytest plugin does per test:
save a run (machine info cached, as it is for a session), load the baseline (parse, validate,
decode every array), and compare the two with the default rules when
``aiperf.baselines.compare`` exists.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiperf.baselines.machine import this_machine
from aiperf.baselines.storage import Storage, StoredRun
from aiperf.results import ProfileResult

TEST_ID = "tests/test_chat.py::test_streaming_ttft[concurrency-32]"


def mock_runs(requests: int, concurrency: int) -> tuple[ProfileResult, ProfileResult]:
    from aiperf.mesh import Mesh
    from aiperf.mock_server import MockServerProcess

    server_options: dict[str, Any] = {"ttft_ms": 20, "ttft_stddev_ms": 5, "itl_ms": 1,
                                      "itl_stddev_ms": 0.3, "error_rate": 0.01}
    profile = {"streaming": True, "concurrency": concurrency, "request_count": requests,
               "osl": 16}
    with MockServerProcess(**server_options) as server, Mesh() as mesh:
        before = mesh.run(url=server.url, **profile)
        after = mesh.run(url=server.url, **profile)
    return before, after


def synthetic_runs(requests: int) -> tuple[ProfileResult, ProfileResult]:
    from tests.harness.synthetic_runs import synthetic_result

    return (synthetic_result(requests, slots=32, tokens=16, error_share=0.01, seed=1),
            synthetic_result(requests, slots=32, tokens=16, error_share=0.01, seed=2))


def timed(repeats: int, work: Callable[[], object]) -> tuple[float, float, float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), min(samples), max(samples)


def compare_work(before: StoredRun, after: StoredRun) -> Callable[[], object] | None:
    try:
        from aiperf.baselines import compare as compare_module
    except ImportError:
        return None
    return lambda: compare_module.compare(before, after, compare_module.DEFAULT_RULES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--synthetic", action="store_true",
                        help="synthetic records instead of two mock-server runs")
    args = parser.parse_args()

    source = "synthetic records" if args.synthetic else "mock server, streaming"
    print(f"two runs of {args.requests} requests ({source}) ...", flush=True)
    before, after = (synthetic_runs(args.requests) if args.synthetic
                     else mock_runs(args.requests, args.concurrency))

    with tempfile.TemporaryDirectory(prefix="aiperf-baseline-cost-") as root:
        machine_ms = timed(args.repeats, lambda: this_machine(Path(__file__).parent))
        storage = Storage(Path(root), keep=args.repeats + 2)
        machine = this_machine(Path(__file__).parent)
        base_path = storage.save(TEST_ID, before, "main", machine=machine)
        rows: list[tuple[str, tuple[float, float, float]]] = [
            ("machine info (once a session: git)", machine_ms),
            ("save (pack + write + prune)",
             timed(args.repeats, lambda: storage.save(TEST_ID, after, machine=machine))),
            ("load (parse + validate + decode)",
             timed(args.repeats, lambda: storage.load(TEST_ID, "main"))),
        ]
        baseline = storage.load(TEST_ID, "main")
        latest = storage.load(TEST_ID)
        assert baseline is not None and latest is not None
        work = compare_work(baseline, latest)
        if work is not None:
            rows.append(("compare (default rules)", timed(args.repeats, work)))
        size = base_path.stat().st_size

    print(f"\n{'operation':<38} {'median ms':>10} {'min':>8} {'max':>8}   "
          f"({args.repeats} repeats)")
    for label, (med, low, high) in rows:
        print(f"{label:<38} {med:>10.1f} {low:>8.1f} {high:>8.1f}")
    per_test = sum(med for label, (med, _, _) in rows if not label.startswith("machine"))
    print(f"{'per test: save + load' + (' + compare' if work else ''):<38} {per_test:>10.1f}")
    if work is None:
        print("compare: aiperf.baselines.compare not available yet, not timed")

    requests = baseline.request_count + baseline.error_count
    print(f"\nstored file: {size:,} bytes = {size / 2**20:.3f} MiB for {requests:,} requests "
          f"({size / requests:.1f} bytes a request, {len(baseline.values)} metrics + end "
          "times)")
    print(f"\n{'metric':<34} {'values':>8} {'bytes':>9} {'B/request':>10} {'B/value':>8}")
    packed = dict(baseline.values)
    if baseline.end_times_s is not None:
        packed["(end_times_s)"] = baseline.end_times_s
    for tag, values in sorted(packed.items(), key=lambda kv: -len(kv[1].model_dump_json())):
        nbytes = len(values.model_dump_json())
        sampled = f" of {values.sampled_from}" if values.sampled_from else ""
        print(f"{tag:<34} {values.count:>8}{sampled} {nbytes:>9,} {nbytes / requests:>10.2f} "
              f"{nbytes / max(values.count, 1):>8.2f}")
    worst = max(len(v.model_dump_json()) for v in packed.values()) / requests
    print(f"\nworst metric: {worst:.2f} bytes a request (limit 20); file "
          f"{'within' if size <= 2**20 else 'OVER'} 1 MiB")


if __name__ == "__main__":
    main()
