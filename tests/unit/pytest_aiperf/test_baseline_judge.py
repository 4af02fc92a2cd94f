"""Relative objectives judged on the interval of ``after - baseline``: PASS when its upper
end meets the allowance, FAIL when its lower end breaks it, INCONCLUSIVE otherwise; and the
gates' outcomes (a REGRESSED gate always fails, an IMPROVED one only when asked)."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_aiperf.baseline import (
    BaselineState,
    ComparisonRow,
    gate_failures,
    judge_relative,
    missing_baselines,
)
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.session import LoadTestRecord
from pytest_aiperf.slo import parse_objective


class Run:
    """Per-request values and end times, as a stored run or a pooled result gives them."""

    def __init__(self, values: dict[str, np.ndarray], end_times: np.ndarray | None = None):
        self.values = values
        self.ends = end_times

    def metric_values(self, tag: str) -> np.ndarray | None:
        return self.values.get(tag)

    def end_times(self) -> np.ndarray | None:
        return self.ends


def latency(median_ms: float, n: int = 2000, seed: int = 1) -> Run:
    rng = np.random.default_rng(seed)
    return Run({"request_latency": median_ms * rng.lognormal(0.0, 0.1, n)})


@pytest.mark.parametrize(("after_ms", "status"), [(100.0, "PASS"), (130.0, "FAIL")])
def test_a_relative_objective_is_decided_when_the_interval_is_clear_of_the_allowance(
    after_ms: float, status: str
) -> None:
    objective = parse_objective("request_latency.p50", "< baseline + 10 %")
    verdict = judge_relative(objective, latency(100.0), latency(after_ms, seed=2), 0.95,
                             sent=2000, source="0001_main")
    assert verdict.status == status, verdict
    assert verdict.objective.threshold == pytest.approx(110.0, rel=0.02)
    low, high = verdict.interval  # bounds of the after value: baseline + bounds of delta
    assert low is not None and high is not None and low <= verdict.measured <= high
    assert "0001_main" in verdict.note and verdict.count == 2000


def test_a_change_at_the_allowance_on_few_requests_is_inconclusive() -> None:
    objective = parse_objective("request_latency.p50", "< baseline + 10 %")
    verdict = judge_relative(objective, latency(100.0, n=60), latency(110.0, n=60, seed=2),
                             0.95, sent=60, source="0001_main")
    assert verdict.status == "INCONCLUSIVE", verdict


def test_a_relative_throughput_reads_the_runs_end_times() -> None:
    steady = np.linspace(0.01, 10.0, 1000)  # 100 requests/s
    slower = np.linspace(0.01, 10.0, 700)  # 70 requests/s
    objective = parse_objective("request_throughput", "> baseline - 5 %")
    kept = judge_relative(objective, Run({}, steady), Run({}, steady), 0.95, 1000, "b")
    dropped = judge_relative(objective, Run({}, steady), Run({}, slower), 0.95, 700, "b")
    assert kept.status in ("PASS", "INCONCLUSIVE") and dropped.status == "FAIL"
    assert dropped.measured == pytest.approx(70.0, rel=0.1)


def test_a_metric_this_run_did_not_measure_fails_and_one_the_baseline_lacks_cannot_decide(
) -> None:
    objective = parse_objective("time_to_first_token.p50", "< baseline + 10 %")
    with_ttft = Run({"time_to_first_token": np.full(500, 10.0)})
    unmeasured = judge_relative(objective, with_ttft, Run({}), 0.95, 500, "b")
    assert unmeasured.status == "FAIL" and unmeasured.measured is None
    no_baseline_value = judge_relative(objective, Run({}), with_ttft, 0.95, 500, "b")
    assert no_baseline_value.status == "INCONCLUSIVE"
    assert "did not measure" in (no_baseline_value.note or "")


class Result:
    """What the evidence of a whole run reads of a result with no metrics."""

    request_count = 10
    error_count = 0

    def __contains__(self, tag: str) -> bool:
        return False


def test_without_a_baseline_a_relative_objective_gets_no_verdict_and_others_do() -> None:
    objectives = [parse_objective("request_latency.p50", "< baseline + 10 %"),
                  parse_objective("request_latency.count", ">= 1")]
    verdicts = judge_runs(objectives, [Result()], None, False, 0.95)  # type: ignore[list-item]
    assert [v.objective.key for v in verdicts] == ["request_latency.count"]
    judged = judge_runs(objectives, [Result()], None, False, 0.95,  # type: ignore[list-item]
                        lambda o, results, sent: judge_relative(
                            o, latency(100.0), latency(100.0), 0.95, sent, "b"))
    assert [v.objective.key for v in judged] == ["request_latency.p50",
                                                 "request_latency.count"]


def row(status: str, gated: bool = True) -> ComparisonRow:
    return ComparisonRow("request_latency.p50", "request_latency.p50:10%", "ms", 100.0, 130.0,
                         30.0, 25.0, 35.0, True, status, gated, 0.95, "exact bootstrap",
                         "request_latency.p50 100 -> 130 ms")


def test_a_regressed_gate_fails_and_an_improved_one_only_with_fail_on_improvement() -> None:
    regressed = LoadTestRecord("t.py::a", "chat", comparisons=[row("REGRESSED")])
    improved = LoadTestRecord("t.py::b", "chat", comparisons=[row("IMPROVED")])
    informational = LoadTestRecord("t.py::c", "chat", comparisons=[row("REGRESSED", False)])
    assert gate_failures([regressed], False) == ["1 of 1 gates REGRESSED vs baseline"]
    assert gate_failures([improved], False) == []
    assert gate_failures([improved], True) == [
        "1 of 1 gates IMPROVED vs baseline (aiperf_fail_on_improvement: store a new "
        "baseline)"]
    assert gate_failures([informational], True) == []  # no rule, no outcome


def test_informational_rows_never_say_the_words_that_decide_an_outcome() -> None:
    assert [row(s, False).word for s in ("REGRESSED", "IMPROVED", "UNCHANGED",
                                         "INCONCLUSIVE")] == [
        "worse", "better", "unchanged", "inconclusive"]
    assert row("REGRESSED").word == "REGRESSED"


def test_runs_that_wanted_a_baseline_and_found_none_are_named() -> None:
    found = LoadTestRecord("t.py::a", "chat", baseline=BaselineState("compared"))
    missing = LoadTestRecord("t.py::b", "chat", baseline=BaselineState("missing",
                                                                       storage=".aiperf"))
    changed = LoadTestRecord("t.py::c", "chat", baseline=BaselineState(
        "profile changed", source="0001_main", differing=["concurrency"]))
    not_asked = LoadTestRecord("t.py::d", "chat")
    assert missing_baselines([found, missing, changed, not_asked]) == [missing, changed]
    assert changed.baseline is not None
    assert changed.baseline.line() == ("not compared with baseline 0001_main: the profile "
                                       "changed (concurrency)")
