"""The cost of judging a test's objectives on 100,000 requests (target: <= 50 ms a test).

    .venv/bin/python benchmarks/verdict_cost.py [--requests 100000] [--repeats 7]

The run is built by the engine's own aggregation from synthetic records (lognormal
latencies, 1 % errors, 8 closed-loop slots), outside the timing. What is timed is what the
plugin does after a run: every objective of a typical test judged on the whole run, on the
steady window, and a windowed objective, with scipy already imported (as it is after the
session's first verdict). Prints each setting's median over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

from aiperf.results import ProfileResult
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.slo import parse_objectives
from tests.harness.synthetic_runs import synthetic_result

SLO = {
    "time_to_first_token.p99": "< 250 ms",
    "request_latency.p99": "< 2 s",
    "adj_request_latency.p90": "< 1.5 s",
    "inter_token_latency.p50": "< 20 ms",
    "request_latency.avg": "< 1 s",
    "request_throughput": "> 10 req/s",
    "output_token_throughput": "> 100 tokens/s",
    "request_error_rate": "< 2 %",
}


def synthetic_run(requests: int, slots: int = 8, seed: int = 1) -> ProfileResult:
    """``requests`` records in ``slots`` back-to-back chains: lognormal TTFT and inter-token
    gaps, 8 output tokens, 1 % server errors."""
    return synthetic_result(requests, slots=slots, tokens=8, error_share=0.01, seed=seed)


def timed(label: str, repeats: int, work: object) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        samples.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(samples)
    print(f"{label:<44} median {median:7.1f} ms  (min {min(samples):.1f}, "
          f"max {max(samples):.1f}, {repeats} runs)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    result = synthetic_run(args.requests)
    config = result.config
    objectives = parse_objectives(SLO)
    windowed = parse_objectives({"request_latency.p99@10s": "< 2 s"})
    judge_runs(objectives, [result], config, False, 0.95)  # imports scipy, warms caches
    print(f"{args.requests:,} requests ({result.error_count} errors), {len(objectives)} "
          "objectives")
    whole = timed("whole run", args.repeats,
                  lambda: judge_runs(objectives, [result], config, False, 0.95))
    timed("steady state", args.repeats,
          lambda: judge_runs(objectives, [result], config, True, 0.95))
    timed("one windowed objective (10 s windows)", args.repeats,
          lambda: judge_runs(windowed, [result], config, False, 0.95))
    verdict = "within" if whole <= 50.0 else "OVER"
    print(f"whole-run verdicts: {whole:.1f} ms, {verdict} the 50 ms target")


if __name__ == "__main__":
    main()
