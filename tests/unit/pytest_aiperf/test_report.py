"""The summary's notes under its table: every breach, error and warning, in the terminal
and in the GitHub step summary alike."""

from __future__ import annotations

from pytest_aiperf.report import render_markdown, render_terminal
from pytest_aiperf.session import LoadTestRecord
from pytest_aiperf.slo import Verdict, parse_objective


def _records() -> list[LoadTestRecord]:
    breached = Verdict(parse_objective("request_latency.p99", "< 1 s"), 1200.0, False, 8, 10)
    met = Verdict(parse_objective("request_latency.p50", "< 2 s"), 900.0, True, 8, 10)
    return [
        LoadTestRecord("t.py::test_slow", "chat c=2 n=10", verdicts=[breached, met],
                       outcome="FAIL", warnings=["late records"], sent=10),
        LoadTestRecord("t.py::test_down", "chat c=1 n=2", outcome="ERROR",
                       error="EndpointError: every request failed\n  2 x 499 ...")]


def test_the_terminal_summary_notes_each_breach_error_and_warning() -> None:
    lines = render_terminal(_records())
    notes = lines[lines.index(next(x for x in lines if x.startswith("  "))):]
    assert notes == [
        "  FAIL test_slow: request_latency.p99 = 1,200.00 ms, needs < 1 s",
        "  WARNING test_slow: late records",
        "  ERROR test_down: EndpointError: every request failed"]
    assert "FAIL" in lines[2] and "ERROR" in lines[3]  # the rows' verdicts


def test_the_step_summary_notes_the_same() -> None:
    text = render_markdown(_records())
    assert text.endswith(
        "- **test_slow**: fail: request_latency.p99 = 1,200.00 ms, needs < 1 s\n"
        "- **test_slow**: warning: late records\n"
        "- **test_down**: error: EndpointError: every request failed\n")
    assert "| ❌ FAIL |" in text and "| ❌ ERROR |" in text
