"""pytest figure (issue "The pytest plugin"): a session of 20 small load tests (20 requests
each) against the mock server. Overhead = what the session costs beyond sending the
requests: session wall time - sum of the runs' benchmark_duration - the wall time of the
same session with the load tests' bodies but no plugin (-p no:aiperf). Also the per-test
overhead (test time from JUnit - its run's benchmark_duration) median, the first test
(which starts the mesh) reported apart. Medians of several sessions.

    .venv/bin/python benchmarks/pytest_overhead.py [--sessions 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import median

from aiperf.mock_server import MockServerProcess

TESTS = 20
REQUESTS = 20
TEST_FILE = f"""
import pytest

@pytest.mark.parametrize("case", range({TESTS}))
@pytest.mark.aiperf(streaming=True, concurrency=4, request_count={REQUESTS}, osl=8,
                    slo={{"request_error_rate": "<= 1 %"}})
def test_small(case):
    pass
"""
CONFTEST = """
import json, os
import pytest

@pytest.hookimpl(optionalhook=True)
def pytest_aiperf_result(item, result):
    with open(os.environ["DURATIONS_FILE"], "a") as handle:
        handle.write(json.dumps([item.nodeid, result.metric("benchmark_duration")]) + "\\n")
"""


def session(project: Path, url: str, plugin: bool) -> tuple[float, dict[str, float],
                                                             dict[str, float]]:
    durations = project / "durations.jsonl"
    durations.unlink(missing_ok=True)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--junitxml", str(project / "junit.xml"), str(project)]
    args += ["--aiperf-url", url] if plugin else ["-p", "no:aiperf", "-W", "ignore"]
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True,
                          env={**__import__("os").environ, "DURATIONS_FILE": str(durations)})
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout[-2000:]
    runs = {}
    if plugin:
        for line in durations.read_text().splitlines():
            nodeid, seconds = json.loads(line)
            runs[nodeid.rsplit("::", 1)[-1]] = seconds
    times = {}
    for case in ET.parse(project / "junit.xml").iter("testcase"):
        times[str(case.get("name"))] = float(case.get("time", 0))
    return wall, runs, times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MockServerProcess(ttft_ms=2, itl_ms=1) as srv:
        project = Path(tmp)
        (project / "test_load.py").write_text(TEST_FILE)
        (project / "conftest.py").write_text(CONFTEST)
        (project / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = "
                                            "function\n")
        totals, per_test, first = [], [], []
        for _ in range(args.sessions):
            baseline, _, _ = session(project, srv.url, plugin=False)
            wall, runs, times = session(project, srv.url, plugin=True)
            totals.append(wall - sum(runs.values()) - baseline)
            ordered = [times[k] - runs[k] for k in times if k in runs]  # in run order
            first.append(ordered[0])
            per_test.extend(ordered[1:])
    print(f"{TESTS} load tests x {REQUESTS} requests, {args.sessions} sessions")
    print(f"total overhead beyond the requests: median {median(totals):.2f} s "
          f"(target <= 1.5 s) [{', '.join(f'{t:.2f}' for t in totals)}]")
    print(f"per-test overhead: median {median(per_test) * 1000:.1f} ms; first test (starts "
          f"the mesh): median {median(first) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
