"""The "vs baseline" block: in the terminal summary, the GitHub step summary and
summary.json, and through the trip from an xdist worker."""

from __future__ import annotations

import json
import math

from pytest_aiperf.baseline import BaselineState, ComparisonRow, comparison_lines
from pytest_aiperf.report import render_markdown, render_terminal
from pytest_aiperf.session import LoadTestRecord


def _row(status: str = "REGRESSED", gated: bool = True, low: float = 19.9,
         high: float = 36.5) -> ComparisonRow:
    return ComparisonRow("time_to_first_token.p99", "time_to_first_token.p99:10%", "ms",
                         180.2, 231.0, 50.8, low, high, True, status, gated, 0.95,
                         "exact bootstrap of each quantile",
                         "time_to_first_token.p99 180.2 -> 231.0 ms")


def _record() -> LoadTestRecord:
    state = BaselineState("compared", source="0003_main, saved 2026-11-30T12:00:00Z",
                          machine=["cores 2 -> 8"])
    return LoadTestRecord("t.py::test_chat", "chat stream c=8 n=500", outcome="FAIL",
                          sent=500, baseline=state,
                          comparisons=[_row(), _row("UNCHANGED", False, -inf(), inf())],
                          saved=".aiperf/t.py-test_chat/0004_auto.json")


def inf() -> float:
    return math.inf


def test_the_change_is_shown_with_its_interval_in_the_rules_terms() -> None:
    assert _row().change_text() == "+28.2 % [+11.0, +20.3]"
    absolute = ComparisonRow("request_latency.p50", "request_latency.p50:+20ms", "ms", 100.0,
                             130.0, 30.0, 25.0, 35.0, False, "REGRESSED", True, 0.95, "m", "t")
    assert absolute.change_text() == "+30.0 ms [+25.0, +35.0]"
    assert _row(low=-inf(), high=inf()).change_text() == "+28.2 % [-inf, +inf]"


def test_the_terminal_summary_has_a_block_per_compared_test() -> None:
    lines = render_terminal([_record()])
    start = lines.index("vs baseline:")
    block = lines[start:]
    assert block[1] == "  test_chat: vs baseline 0003_main, saved 2026-11-30T12:00:00Z"
    assert block[2].split() == ["Metric", "Before", "After", "Change", "[interval]", "Status"]
    assert block[4].split() == ["time_to_first_token.p99", "180.20", "ms", "231.00", "ms",
                                "+28.2", "%", "[+11.0,", "+20.3]", "REGRESSED", "(margin",
                                "10%)"]
    assert block[5].rstrip().endswith("unchanged")
    assert "    (another machine: cores 2 -> 8)" in block
    assert "  STORED test_chat: .aiperf/t.py-test_chat/0004_auto.json" in lines


def test_a_test_without_a_usable_baseline_says_why_in_the_block() -> None:
    record = LoadTestRecord("t.py::test_new", "chat c=1 n=10", outcome="PASS",
                            baseline=BaselineState("missing", storage="/repo/.aiperf"))
    lines = render_terminal([record])
    assert lines[lines.index("vs baseline:") + 1] == (
        "  test_new: no stored baseline (latest) for this test in /repo/.aiperf")


def test_the_step_summary_lists_each_comparison() -> None:
    text = render_markdown([_record()])
    assert ("| test_chat | time_to_first_token.p99 | 180.20 ms | 231.00 ms | "
            "+28.2 % [+11.0, +20.3] | REGRESSED | time_to_first_token.p99:10% |") in text
    assert "| unchanged | (informational) |" in text


def test_comparisons_reach_summary_json_and_survive_the_xdist_trip() -> None:
    record = _record()
    data = json.loads(json.dumps(record.to_dict()))  # JSON-safe: no bare infinities
    assert data["comparisons"][1]["low"] == "-inf"
    assert data["baseline"]["status"] == "compared" and data["saved"] == record.saved
    back = LoadTestRecord.from_dict(data)
    assert back.comparisons == record.comparisons
    assert back.baseline == record.baseline and back.saved == record.saved


def test_the_failure_message_block_leads_with_what_was_compared() -> None:
    state = BaselineState("compared", source="0001_main, saved x")
    lines = comparison_lines([_row()], state)
    assert lines[0] == "vs baseline 0001_main, saved x"
    assert any("REGRESSED (margin 10%)" in line for line in lines)
    assert lines[-1] == "  intervals: two-sided at 95 % confidence (methods in summary.json)"


def test_a_failure_message_carries_the_gates_and_the_block_of_each_compared_run() -> None:
    from pytest_aiperf.fixtures import SLOBreach
    from pytest_aiperf.slo import Verdict, implicit_objectives

    record = _record()
    record.verdicts = [Verdict(implicit_objectives(None)[0], 0.0, "PASS", 500, 500)]
    message = str(SLOBreach.of_records([record], gates=["1 of 1 gates REGRESSED vs baseline"]))
    lines = message.splitlines()
    assert lines[0] == "1 of 1 gates REGRESSED vs baseline"  # no objective was breached
    assert "run 1 (chat stream c=8 n=500):" in lines
    assert any(line.endswith("REGRESSED (margin 10%)") for line in lines)
    undecided = SLOBreach.of_records([record], inconclusive=True, details="why",
                                     gates=["1 gates INCONCLUSIVE vs baseline (the "
                                            "inconclusive policy fails the test)"])
    assert str(undecided).splitlines()[:2] == [
        "1 gates INCONCLUSIVE vs baseline (the inconclusive policy fails the test)", "why"]
