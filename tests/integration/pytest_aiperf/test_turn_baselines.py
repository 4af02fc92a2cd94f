"""A regression gate on some turns of multi-turn sessions, in real sessions: a run of
whole sessions is stored, and a later session against a slower server fails the gate
``request_latency.p50[turn>=2]`` (the stored run kept each value's turn); the row is named
with its turn range."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

FAST_MS = 40.0
SLOW_MS = 60.0  # 50 % slower on every turn
# 20 %: a busy box moves a 40 ms mock's median by a few ms between sessions (as in
# test_baselines.py); the slower server is 50 % slower
GATE = "request_latency.p50[turn>=2]:20%"
TEST = """
    import pytest

    @pytest.mark.aiperf(conversation_num=30, conversation_turn_mean=3, concurrency=6,
                        slo={"request_latency.p50[turn>=2]": "< 10 s"})
    def test_chat():
        pass
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    from aiperf.mock_server import MockServerProcess

    with MockServerProcess(ttft_ms=FAST_MS, tokens=2) as fast, \
            MockServerProcess(ttft_ms=SLOW_MS, tokens=2) as slow:
        yield {"fast": fast.url, "slow": slow.url}


def gate_row(project: pytest.Pytester) -> dict:
    """The gated row (--aiperf-compare adds informational rows of the default statistics)."""
    record = json.loads((project.path / "out" / "summary.json").read_text())["load_tests"][0]
    (row,) = [r for r in record["comparisons"] if r["gated"]]
    return row


def test_a_gate_on_later_turns_compares_those_turns_of_the_stored_run(
        project: pytest.Pytester, servers: dict[str, str]) -> None:
    project.makepyfile(test_chat=TEST)
    saved = project.runpytest_inprocess("--aiperf-url", servers["fast"], "--aiperf-save",
                                        "main")
    saved.assert_outcomes(passed=1)
    (stored,) = sorted((project.path / ".aiperf").glob("*/*.json"))
    kept = json.loads(stored.read_text())
    assert kept["value_turns"]["request_latency"]["count"] == 90  # 30 sessions x 3 turns

    same = project.runpytest_inprocess("--aiperf-url", servers["fast"], "--aiperf-compare",
                                       "main", "--aiperf-compare-fail", GATE,
                                       "--aiperf-artifacts", "out")
    same.assert_outcomes(passed=1)
    row = gate_row(project)
    assert row["key"] == "request_latency.p50[turn>=2]", row
    assert row["status"] in ("UNCHANGED", "INCONCLUSIVE"), row

    slower = project.runpytest_inprocess("--aiperf-url", servers["slow"], "--aiperf-compare",
                                         "main", "--aiperf-compare-fail", GATE,
                                         "--aiperf-artifacts", "out")
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines([
        "*1 of 1 gates REGRESSED vs baseline*",
        "*request_latency.p50[[]turn>=2[]] * ms * ms  +* % [[]+*, +*[]]  REGRESSED (margin 20%)",
    ])
    row = gate_row(project)
    assert row["status"] == "REGRESSED", row
    # 40 -> 60 ms of a mock's latency: the change is about +50 %, measured on turns 2 and 3
    assert 0.2 < (row["after"] - row["before"]) / row["before"] < 0.8, row


def test_a_bad_turn_gate_is_a_usage_error_naming_it(project: pytest.Pytester) -> None:
    project.makepyfile(test_chat=TEST)
    result = project.runpytest_inprocess("--aiperf-compare-fail",
                                         "request_latency.p50[turn>=0]:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*request_latency.p50[[]turn>=0[]]:10%*turns are numbered from 1*"])
