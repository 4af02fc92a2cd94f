"""The HTML report of a session of 20 load tests x 1,000 requests: its size (target
<= 5 MB) and the time to write it (target <= 2 s), plus what importing costs.

    .venv/bin/python benchmarks/report_cost.py [--tests 20] [--requests 1000] [--repeats 3]

The session is built outside the timing: each test a run made by the engine's own
aggregation from synthetic records (lognormal latencies, 2 % errors, 8 closed-loop slots),
exported as ``--aiperf-artifacts`` does (a directory per test and ``summary.json`` with
four objectives each). Four tests form a parametrized ladder. What is timed is
``write_report`` from the artifacts root (reading every file, figures, HTML) in a fresh
process each repeat, imports included, then once more in that process (what a pytest
session, which has the modules loaded, pays); prints the medians, the file's size and the
share of it that is the chart library, and ``import aiperf.report``'s cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from aiperf.exporters.base import export_files
from tests.harness.synthetic_runs import synthetic_result

OBJECTIVES = [("time_to_first_token.p99", "< 120 ms"), ("inter_token_latency.p50", "< 6 ms"),
              ("request_latency.p90", "< 200 ms"), ("request_error_rate", "<= 5 %")]

_TIMED = """
import sys, time
from pathlib import Path
t0, c0 = time.perf_counter(), time.process_time()
from aiperf.report import write_report
out = write_report([Path(sys.argv[1])], Path(sys.argv[2]))
t1, c1 = time.perf_counter(), time.process_time()
write_report([Path(sys.argv[1])], Path(sys.argv[2]))
print(t1 - t0, time.perf_counter() - t1, c1 - c0, time.process_time() - c1)
"""

_IMPORT = """
import sys, time
import aiperf, pathlib  # loaded by any session or CLI run already
t0 = time.perf_counter()
import aiperf.report
print(time.perf_counter() - t0)
"""


def build_session(root: Path, tests: int, requests: int) -> None:
    entries = []
    for number in range(tests):
        slots = (1, 2, 4, 8)[number % 4] if number < 4 else 8
        result = synthetic_result(requests, slots=slots, tokens=8, error_share=0.02,
                                  seed=number + 1)
        nodeid = (f"test_load.py::test_ladder[{slots}]" if number < 4
                  else f"test_load.py::test_case_{number}")
        directory = root / nodeid.replace("::", "_").replace("[", "_").strip("]")
        export_files(result, directory)
        verdicts = []
        for key, threshold in OBJECTIVES:
            measured = result.metric(key)
            verdicts.append({"objective": key, "threshold": threshold, "measured": measured,
                             "unit": "ms", "verdict": "PASS",
                             "interval": [measured * 0.95, measured * 1.05],
                             "confidence": 0.95, "n": requests, "method": "synthetic",
                             "note": None, "window": "whole run", "needed": None,
                             "measured_requests": requests, "sent_requests": requests,
                             "implicit": False})
        entries.append({"nodeid": nodeid, "run": 1, "profile": f"chat stream c={slots}",
                        "outcome": "PASS", "metrics": {}, "objectives": verdicts,
                        "artifacts": str(directory), "baseline": None})
    (root / "summary.json").write_text(json.dumps({"load_tests": entries}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiperf-report-cost-") as tmp:
        root = Path(tmp) / "artifacts"
        build_session(root, args.tests, args.requests)
        out = Path(tmp) / "report.html"
        runs = [subprocess.run([sys.executable, "-c", _TIMED, str(root), str(out)],
                               capture_output=True, text=True, check=True).stdout.split()
                for _ in range(args.repeats)]
        times, warm, cpu, cpu_warm = ([float(run[i]) for run in runs] for i in range(4))
        imports = [float(subprocess.run([sys.executable, "-c", _IMPORT], capture_output=True,
                                        text=True, check=True).stdout) for _ in range(5)]
        size = out.stat().st_size
        library = (Path(__file__).parents[1] / "aiperf" / "report" / "assets" /
                   "echarts.common.min.js").stat().st_size
        print(f"report of {args.tests} tests x {args.requests} requests:")
        print(f"  write_report (fresh process, import included): median "
              f"{statistics.median(times):.2f} s over {args.repeats} (target <= 2 s), CPU "
              f"{statistics.median(cpu):.2f} s")
        print(f"  write_report again in that process (modules loaded, as in a pytest "
              f"session): median {statistics.median(warm):.2f} s, CPU "
              f"{statistics.median(cpu_warm):.2f} s")
        print("  (wall time is the machine's load too; CPU time is the report's own)")
        print(f"  file: {size / 1e6:.2f} MB (target <= 5 MB), of which the chart library "
              f"{library / 1e6:.2f} MB, data and HTML {(size - library) / 1e6:.2f} MB")
        print(f"  import aiperf.report (after aiperf, pathlib): median "
              f"{statistics.median(imports) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
