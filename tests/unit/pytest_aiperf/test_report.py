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


def test_the_step_summary_lists_every_objective_with_its_interval() -> None:
    objective = parse_objective("request_latency.p99", "< 1 s")
    verdict = Verdict(objective, 900.0, "INCONCLUSIVE", 120, 120, (850.0, None), 0.95,
                      "order statistics (binomial, distribution-free)", "p99 needs n >= 299",
                      "steady state 1.0-9.0 s")
    record = LoadTestRecord("t.py::test_tail", "chat c=2 n=120", verdicts=[verdict],
                            outcome="PASS", sent=120)
    text = render_markdown([record])
    assert ("| test_tail | request_latency.p99 | 900.00 ms | [850.00, none] | 0.95 | < 1 s | "
            "INCONCLUSIVE | 120 | order statistics (binomial, distribution-free) | "
            "steady state 1.0-9.0 s |") in text
    assert ("- **test_tail**: inconclusive: request_latency.p99 = 900.00 ms [850.00, none], "
            "needs < 1 s (steady state 1.0-9.0 s)") in text


def test_a_capacity_claims_line_is_under_the_table_in_both() -> None:
    line = ("capacity >= 16 concurrent: FAIL (at 16: time_to_first_token.p99 FAIL "
            "[312, 355] ms)")
    breached = Verdict(parse_objective("time_to_first_token.p99", "< 250 ms"), 330.0, "FAIL",
                       500, 500, (312.0, 355.0), 0.95, "order statistics")
    claim = LoadTestRecord("t.py::test_claim", "chat c=16", verdicts=[breached],
                           outcome="FAIL", sent=500,
                           capacity={"claim": "capacity >= 16 concurrent", "status": "FAIL",
                                     "line": line, "headroom": None})
    # a headroom step's entry has no line: the claim's line already says it
    step = LoadTestRecord("t.py::test_claim", "chat c=20 headroom", outcome="PASS", sent=500,
                          run=2, capacity={"claim": "capacity >= 16 concurrent",
                                           "role": "headroom", "point": 20, "status": "FAIL"})
    lines = render_terminal([claim, step])
    assert lines[-2:] == [
        f"  CAPACITY test_claim: {line}",
        "  FAIL test_claim: time_to_first_token.p99 = 330.00 ms [312.00, 355.00], needs "
        "< 250 ms"]
    text = render_markdown([claim, step])
    assert f"- **test_claim**: capacity: {line}\n" in text
    assert text.count("capacity >= 16") == 1
