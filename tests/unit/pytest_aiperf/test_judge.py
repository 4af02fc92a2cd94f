"""Verdicts from intervals: each statistic gets its bound, and the bound decides."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, binom

from aiperf.common.codec import (
    PLANNED_CANCEL_REASON,
    PROFILING,
    ErrorInfo,
    MetricRecord,
    cancellation,
)
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import compute_results
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult
from pytest_aiperf.judge import (
    PooledEvidence,
    across_runs,
    judge,
    judge_runs,
    judge_windowed,
)
from pytest_aiperf.slo import OPERATORS, Verdict, implicit_objectives, parse_objective


@dataclass
class FakeEvidence:
    """A sample with known contents (the shape of ``aiperf.windows.Sample``)."""

    latencies: list[float] = field(default_factory=list)
    n_err: int = 0
    rates: list[float] = field(default_factory=list)
    label: str = "whole run"
    duration_s: float = 10.0

    @property
    def n_ok(self) -> int:
        return len(self.latencies)

    def values(self, tag: str) -> np.ndarray:
        data = np.asarray(self.latencies, dtype=np.float64)
        if tag.startswith("adj_"):
            return np.concatenate([data, np.full(self.n_err, np.inf)])
        return data

    def scalar(self, tag: str) -> float | None:
        sent = self.n_ok + self.n_err
        return {"request_error_rate": 100.0 * self.n_err / sent if sent else 0.0,
                "request_throughput": self.n_ok / self.duration_s,
                "request_count": float(self.n_ok)}.get(tag)

    def throughput_windows(self, tag: str, n_windows: int = 10) -> np.ndarray:
        return np.asarray(self.rates, dtype=np.float64)


def _upper_rank(n: int, p: float, confidence: float) -> int:
    """The least k with P(Binomial(n, p) <= k - 1) >= confidence, by summing the pmf."""
    total = 0.0
    for k in range(1, n + 1):
        total += binom.pmf(k - 1, n, p)
        if total >= confidence:
            return k
    raise AssertionError("no rank")


def test_a_percentile_bound_is_the_exact_order_statistic() -> None:
    values = list(np.random.default_rng(7).permutation(np.arange(1.0, 1001.0)))
    verdict = judge(parse_objective("request_latency.p95", "< 2 s"), FakeEvidence(values))
    assert verdict.interval is not None
    assert verdict.interval[1] == float(_upper_rank(1000, 0.95, 0.95))  # value k is rank k
    assert verdict.status == "PASS" and verdict.method.startswith("order statistics")


@pytest.mark.parametrize(("threshold", "status"), [
    ("< 200 ms", "PASS"),    # every value is 100 ms: the upper bound is 100
    ("< 100 ms", "FAIL"),    # the lower bound 100 is not under 100
    ("<= 100 ms", "PASS"),
])  # fmt: skip
def test_the_bounds_decide_by_the_operator(threshold: str, status: str) -> None:
    evidence = FakeEvidence([100.0] * 400)
    assert judge(parse_objective("request_latency.p99", threshold), evidence).status == status


def test_a_p99_below_its_minimum_n_is_inconclusive_and_names_the_n_that_decides() -> None:
    verdict = judge(parse_objective("request_latency.p99", "< 1 s"),
                    FakeEvidence([10.0] * 100))
    assert verdict.status == "INCONCLUSIVE" and verdict.interval == (10.0, None)
    assert verdict.needed == 299 and verdict.note and "299" in verdict.note


def test_failed_requests_count_as_infinitely_slow_in_adjusted_percentiles() -> None:
    verdict = judge(parse_objective("adj_request_latency.p90", "< 1 s"),
                    FakeEvidence([1.0] * 80, n_err=20))
    assert verdict.status == "FAIL" and verdict.measured == math.inf
    assert verdict.to_dict()["measured"] == "inf"


def test_the_error_rate_gets_the_exact_clopper_pearson_bound() -> None:
    objective = parse_objective("request_error_rate", "< 1 %")
    passing = judge(objective, FakeEvidence([1.0] * 300))
    high = passing.interval[1] if passing.interval else None
    assert high == pytest.approx(100 * beta.ppf(0.95, 1, 300))  # k=0: 1 - 0.05 ** (1/300)
    assert passing.status == "PASS" and passing.count == 300
    assert judge(objective, FakeEvidence([1.0] * 100)).status == "INCONCLUSIVE"
    assert judge(objective, FakeEvidence([1.0] * 90, n_err=10)).status == "FAIL"


def test_the_implicit_objective_is_an_exact_count_of_the_requests_sent() -> None:
    objective = implicit_objectives(None)[0]
    assert judge(objective, FakeEvidence([1.0] * 3)).status == "PASS"
    failed = judge(objective, FakeEvidence([1.0] * 3, n_err=1))
    assert failed.status == "FAIL" and failed.method == "observed count (exact)"


def test_no_errors_allowed_is_an_exact_check_of_the_requests_sent() -> None:
    objective = parse_objective("request_error_rate", "<= 0 %")
    assert judge(objective, FakeEvidence([1.0] * 5)).status == "PASS"
    assert judge(objective, FakeEvidence([1.0] * 500, n_err=1)).status == "FAIL"


def test_throughput_is_judged_on_batch_means_of_its_windows() -> None:
    objective = parse_objective("request_throughput", ">= 9 req/s")
    steady = judge(objective, FakeEvidence([1.0] * 100, rates=[10.0, 10.2, 9.8, 10.1, 9.9]))
    assert steady.status == "PASS" and steady.method.startswith("batch means")
    assert steady.measured == 10.0  # the sample's own throughput, not the windows' mean
    few = judge(objective, FakeEvidence([1.0] * 100, rates=[10.0, 10.0, 10.0]))
    assert few.status == "INCONCLUSIVE" and few.note and "fewer than 5 windows" in few.note


def test_point_statistics_are_judged_as_they_are_with_no_interval() -> None:
    verdict = judge(parse_objective("request_latency.max", "< 50 ms"),
                    FakeEvidence([10.0, 60.0]))
    assert (verdict.status, verdict.measured, verdict.interval_text) == (
        "FAIL", 60.0, "no interval")


def test_a_metric_the_sample_lacks_fails_as_not_measured() -> None:
    verdict = judge(parse_objective("request_latency.p50", "< 1 s"), FakeEvidence([]))
    assert verdict.status == "FAIL" and verdict.measured is None


def test_pooled_runs_concatenate_values_and_weight_rates_by_duration() -> None:
    pooled = PooledEvidence([FakeEvidence([1.0] * 10, duration_s=1.0, rates=[10.0] * 5),
                             FakeEvidence([2.0] * 30, n_err=2, duration_s=3.0,
                                          rates=[10.0] * 5)])
    assert pooled.values("request_latency").size == 40 and pooled.n_err == 2
    assert pooled.scalar("request_throughput") == pytest.approx(40 / 4.0)
    assert pooled.scalar("request_error_rate") == pytest.approx(100 * 2 / 42)
    assert pooled.throughput_windows("request_throughput").size == 10


def test_a_windowed_objective_fails_on_its_worst_window_and_skips_empty_ones() -> None:
    objective = parse_objective("request_latency.p50@10s", "< 50 ms")
    assert objective.window_s == 10.0 and objective.metric == "request_latency"
    windows = [FakeEvidence([10.0] * 50, label="window 0-10 s"),
               FakeEvidence([90.0] * 50, label="window 10-20 s"),
               FakeEvidence([], label="window 20-30 s")]
    verdict = judge_windowed(objective, windows, 0.95, 100)
    assert verdict.status == "FAIL" and verdict.measured == 90.0
    assert verdict.window == "worst: window 10-20 s"
    assert verdict.confidence == pytest.approx(1 - 0.05 / 2)  # two windows had requests
    assert judge_windowed(objective, windows[:1], 0.95, 50).status == "PASS"


def test_across_runs_is_a_t_interval_over_the_per_run_statistics() -> None:
    objective = parse_objective("request_latency.p50", "< 100 ms")
    runs = [Verdict(objective, m, "PASS", 100, 100) for m in (50.0, 52.0, 48.0, 51.0)]
    verdict = across_runs(objective, runs, 0.95)
    assert verdict.status == "PASS" and verdict.window == "across 4 runs"
    assert verdict.interval is not None and verdict.interval[0] < 50.25 < verdict.interval[1]
    lone = across_runs(objective, runs[:1], 0.95)
    assert lone.status == "INCONCLUSIVE"
    implicit = implicit_objectives(None)[0]
    clean = [Verdict(implicit, 0.0, "PASS", 10, 10)] * 3
    assert across_runs(implicit, clean, 0.95).status == "PASS"  # exact, not a t on zeros
    one_error = [*clean, Verdict(implicit, 10.0, "FAIL", 10, 10)]
    assert across_runs(implicit, one_error, 0.95).status == "FAIL"


def test_a_verdict_survives_its_json_form() -> None:
    verdict = judge(parse_objective("adj_request_latency.p50", "< 1 s"),
                    FakeEvidence([1.0] * 5, n_err=10))
    again = Verdict.from_dict(verdict.to_dict())
    assert (again.status, again.measured, again.interval, again.method) == (
        verdict.status, verdict.measured, verdict.interval, verdict.method)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 1e4), min_size=0, max_size=400),
       st.sampled_from(["p50", "p90", "p95", "p99"]), st.sampled_from(["<", "<=", ">", ">="]),
       st.floats(0.0, 1e4))
def test_a_verdict_never_claims_more_than_its_bounds(
    values: list[float], stat: str, op: str, threshold: float
) -> None:
    """PASS only when the bound on the objective's side meets the threshold, FAIL only when
    the other bound breaks it: no false PASS from a point estimate."""
    verdict = judge(parse_objective(f"request_latency.{stat}", f"{op} {threshold!r} ms"),
                    FakeEvidence(values))
    if not values:
        assert verdict.status == "FAIL" and verdict.measured is None  # not measured
        return
    assert verdict.interval is not None
    low, high = verdict.interval
    meets = OPERATORS[op]
    if verdict.status == "PASS":
        bound = high if op in ("<", "<=") else low
        assert bound is not None and meets(bound, threshold)
    elif verdict.status == "FAIL":
        bound = low if op in ("<", "<=") else high
        assert bound is not None and not meets(bound, threshold)
    else:
        assert verdict.needed is None or verdict.needed > len(values)


# -- the implicit check with planned cancellations (request_cancellation_rate) --------------

MS = 1_000_000


def _result(ok: int, planned: int, failed: int) -> ProfileResult:
    """A run computed from records as the records manager would: ``ok`` answered requests,
    ``planned`` cancellations the profile asked for, ``failed`` server errors."""
    records = []
    for kind, n in (("ok", ok), ("planned", planned), ("failed", failed)):
        for _ in range(n):
            cid = len(records)
            start = (cid + 1) * 10 * MS
            if kind == "ok":
                records.append(MetricRecord(cid, PROFILING, "w", start - MS, start, 0,
                                            start + 5 * MS, MS, -1, 5 * MS, 10, 5, []))
                continue
            error = (cancellation(PLANNED_CANCEL_REASON) if kind == "planned"
                     else ErrorInfo(500, "Server Error", "boom"))
            records.append(MetricRecord(cid, PROFILING, "w", start - MS, start, 0,
                                        start + MS, -1, -1, -1, 10, 0, [], error=error,
                                        cancelled=kind == "planned"))
    config = UserConfig(streaming=True)
    meta = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
    out = compute_results(records, config, meta, [(0, len(records))],  # type: ignore[arg-type]
                          streaming=True)
    return ProfileResult.from_dict(out, config)


def test_planned_cancellations_leave_the_denominator_too() -> None:
    """3 server failures among the 50 requests meant to succeed is 6 %: over a 5 % limit,
    though 3 of all 100 sent would be 3 % (the planned cancellations diluting the rate)."""
    result = _result(ok=47, planned=50, failed=3)
    assert (result.planned_cancellation_count, result.error_count) == (50, 53)
    [verdict] = judge_runs(implicit_objectives(5.0), [result], result.config, False, 0.95)
    assert verdict.status == "FAIL"
    assert verdict.measured == pytest.approx(6.0)
    assert (verdict.count, verdict.sent) == (50, 100)
    assert verdict.note == ("50 cancellations the profile asked for are not counted: "
                            "3 of the other 50 requests failed")
    [within] = judge_runs(implicit_objectives(7.0), [result], result.config, False, 0.95)
    assert within.status == "PASS" and within.measured == pytest.approx(6.0)


def test_pooled_runs_leave_every_runs_planned_cancellations_out() -> None:
    runs = [_result(ok=18, planned=0, failed=2), _result(ok=10, planned=10, failed=0)]
    [verdict] = judge_runs(implicit_objectives(8.0), runs, runs[0].config, False, 0.95)
    # 2 of 30 = 6.7 %, never 2 of 40 = 5 %
    assert (verdict.measured, verdict.count) == (pytest.approx(100 * 2 / 30), 30)
    assert verdict.status == "PASS"


@pytest.mark.parametrize("threshold", [None, 5.0])
def test_a_run_of_planned_cancellations_only_has_nothing_left_to_judge(
        threshold: float | None) -> None:
    """Every request sent was cancelled as asked: no other request, so none failed (a
    planned cancellation is an error: there are never more of them than errors)."""
    result = _result(ok=0, planned=10, failed=0)
    [verdict] = judge_runs(implicit_objectives(threshold), [result], result.config, False,
                           0.95)
    assert (verdict.status, verdict.measured, verdict.count, verdict.sent) == (
        "PASS", 0.0, 0, 10)
    assert verdict.note is not None and "none left to judge" in verdict.note


@pytest.mark.parametrize("text", ["<= 0 %", "< 80 %"])
def test_an_explicit_error_rate_keeps_aiperfs_number_and_names_the_planned_cancels(
        text: str) -> None:
    """``request_error_rate`` as AIPerf defines it counts a planned cancellation as an
    error (metrics-and-artifacts: code 499, in error_request_count), so an explicit
    objective keeps that number, exact or with its interval; the note says how many of
    the errors the profile asked for, so a FAIL of ``<= 0 %`` is not read as the server's."""
    result = _result(ok=47, planned=50, failed=3)
    objective = parse_objective("request_error_rate", text)
    [verdict] = judge_runs([objective], [result], result.config, False, 0.95)
    assert verdict.measured == pytest.approx(53.0)  # 53 errors of 100 sent, unchanged
    assert verdict.status == ("FAIL" if text == "<= 0 %" else "PASS")
    assert verdict.note is not None and verdict.note.endswith(
        "50 of these 53 errors were cancellations the profile asked for "
        "(request_cancellation_rate), counted as errors as AIPerf counts them")
    [count] = judge_runs([parse_objective("error_request_count", "<= 60")], [result],
                         result.config, False, 0.95)
    assert (count.status, count.measured) == ("PASS", 53.0)
    assert count.note is not None and "50 of these 53 errors" in count.note
    # On a steady window the planned ones are counted over the whole run ("no request may
    # fail" is always judged on the whole run).
    [steady] = judge_runs([objective], [result], result.config, True, 0.95)
    told = "50 of these 53" if text == "<= 0 %" else "50 of the whole run's 53 errors"
    assert steady.note is not None and told in steady.note
    # Without planned cancellations the verdict is as before, with no such note.
    plain = _result(ok=47, planned=0, failed=3)
    [before] = judge_runs([objective], [plain], plain.config, False, 0.95)
    assert before.note is None or "cancellations" not in before.note
