"""Probes and requests a capacity search uses against the mock's capacity model.

    .venv/bin/python benchmarks/capacity_search.py [--capacities 2,3,4,6] [--requests 100]
        [--percentile 90] [--tolerance 0.1] [--min 2] [--json]

For each true capacity N the mock gets N slots and a fixed TTFT of 60 N ms with one token,
so a request holds its slot for the TTFT and the wait one client above the slots adds
(S / N = 60 ms) stands well above a loaded machine's noise; the objective is TTFT pXX below
the middle of the window where ``true_capacity`` says the answer is N (client slack 5 ms;
at p90 the window closes near N = 10, use --percentile 99 and --requests 300 above). Each
probe sends ``--requests`` (more when extend needs them, up to 4x). The search starts at
``--min`` 2: a lone client on a loaded box wakes late (docs/capacity.md). Prints, per
capacity: the answer found, probes, requests, seconds, and whether it is exact.
"""

from __future__ import annotations

import argparse
import json
import time

from aiperf.capacity import Budget, run_search
from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import ProbeRunner
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.slots import queued_ttft_ms, true_capacity
from pytest_aiperf.policy import VerdictPolicy

CLIENT_MS = 5.0


def one(mesh: Mesh, slots: int, requests: int, percentile: float, tolerance: float,
        low: float) -> dict[str, object]:
    ttft = 60.0 * slots
    config = MockServerConfig(ttft_ms=ttft, tokens=1, slots=slots)
    queued = queued_ttft_ms(config, percentile, requests=requests, client_ms=CLIENT_MS)
    threshold = round((ttft + CLIENT_MS + queued) / 2, 1)
    truth = true_capacity(config, threshold, percentile=percentile, requests=requests,
                          client_ms=CLIENT_MS)
    server = MockServerProcess(**config.model_dump(exclude={"host", "port"}))
    url = server.start()
    try:
        runner = ProbeRunner(
            mesh.run, {"url": url, "model": "m", "streaming": True, "osl": 1,
                       "request_count": requests},
            [parse_slo(f"time_to_first_token.p{percentile:g}<{threshold:g}ms")],
            over="concurrency", policy=VerdictPolicy(inconclusive="extend", validity="off"))
        started = time.monotonic()
        result = run_search(runner, over="concurrency", low=low, high=1024,
                            tolerance=tolerance, budget=Budget(max_probes=30))
        seconds = time.monotonic() - started
    finally:
        server.stop()
    return {"true_capacity": truth, "ttft_ms": ttft, "threshold_ms": threshold,
            "max_passing": result.max_passing, "min_failing": result.min_failing,
            "probes": len(result.probes), "requests": result.requests,
            "seconds": round(seconds, 1),
            "brackets_truth": (result.max_passing == truth
                               and result.min_failing == truth + 1),
            "points": [(p.point, p.status, p.requests) for p in result.probes]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacities", default="2,3,4,6")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--percentile", type=float, default=90.0)
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--min", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with Mesh(workers=1, command_timeout=60) as mesh:
        for slots in (int(x) for x in args.capacities.split(",")):
            row = one(mesh, slots, args.requests, args.percentile, args.tolerance, args.min)
            rows.append(row)
            if not args.json:
                print(f"true capacity {slots:>3}: found {row['max_passing']} (fails at "
                      f"{row['min_failing']}), {row['probes']} probes, {row['requests']} "
                      f"requests, {row['seconds']} s, threshold {row['threshold_ms']} ms over "
                      f"TTFT {row['ttft_ms']:g} ms: "
                      f"{'OK' if row['brackets_truth'] else 'MISSED'}", flush=True)
                print("    probes: " + ", ".join(f"{p:g} {s} ({n})"
                                                 for p, s, n in row["points"]), flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
