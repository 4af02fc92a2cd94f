"""Under pytest-xdist, load tests of different workers never overlap in time, and the
controller reports every worker's load tests once: one table, one summary.json, one
GitHub step summary."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime

import pytest

from pytest_aiperf.runlock import lock_path


def test_load_tests_take_turns_across_workers_and_are_reported_once(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    step_summary = project.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    project.makeconftest("""
        import json, os

        def pytest_aiperf_result(item, result):
            with open("spans.jsonl", "a") as handle:
                handle.write(json.dumps([item.name, os.environ.get("PYTEST_XDIST_WORKER"),
                                         result.start_time, result.end_time]) + "\\n")
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3, 4])
        @pytest.mark.aiperf(concurrency=2, duration="0.6s")
        def test_load(n, aiperf_result):
            assert aiperf_result.request_count > 0

        @pytest.mark.parametrize("n", range(6))
        def test_unit(n):
            pass
    """)
    testrunuid = uuid.uuid4().hex
    result = project.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                          "--testrunuid", testrunuid, "--aiperf-artifacts", "out")
    result.assert_outcomes(passed=10)
    spans = [json.loads(line) for line in (project.path / "spans.jsonl").read_text().splitlines()]
    assert {worker for _, worker, _, _ in spans} == {"gw0", "gw1"}  # both workers ran some
    intervals = sorted((datetime.fromisoformat(s), datetime.fromisoformat(e))
                       for _, _, s, e in spans)
    for (_, end), (start, _) in itertools.pairwise(intervals):
        assert end <= start, intervals  # never two runs at once
    out = result.stdout.str()
    assert out.count("aiperf load tests") == 1
    for n in (1, 2, 3, 4):  # rows come in the order the workers finished
        result.stdout.fnmatch_lines([f"test_load[[]{n}[]]*chat c=2 0.6s*PASS"])
    summary = json.loads((project.path / "out" / "summary.json").read_text())
    assert sorted(t["nodeid"] for t in summary["load_tests"]) == [
        f"test_load_tests_take_turns_across_workers_and_are_reported_once.py::test_load[{n}]"
        for n in (1, 2, 3, 4)]
    assert not lock_path(testrunuid).exists()  # the controller removed the workers' lock
    text = step_summary.read_text()
    assert text.count("### pytest-aiperf load tests") == 1 and text.count("✅ PASS") == 4
