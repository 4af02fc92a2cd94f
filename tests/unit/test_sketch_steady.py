"""Sketch mode's steady window: the records manager's ``SteadyTracker`` finds the steady span
as records come (closed loop: the exact ramp; open loop: MSER-5 on binned means), the host
merges the base windows wholly inside it (rounded inward), and a steady objective decided
on it matches exact mode's on the same records within the sketch's relative accuracy."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import RunAggregator, compute_results
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import EndpointMetadata
from aiperf.results import MetricResult, ProfileResult
from aiperf.statistics import mser5
from aiperf.statistics.sketch import MetricSketch
from aiperf.windows import (
    SteadyTracker,
    _closed_loop_ramp,
    binned_mser5,
    sketch_steady_state,
    steady_state,
    windows,
)
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.slo import parse_objective

MS = 1_000_000
S = 1_000_000_000
T0 = 9_000 * S
ALPHA = 0.01
META = plugins.get_metadata(PluginType.ENDPOINT, "chat")
assert isinstance(META, EndpointMetadata)


def record(cid: int, start: int, latency: int) -> MetricRecord:
    ttft = latency // 4
    return MetricRecord(cid, PROFILING, "w", start - MS // 10, start, 0, start + latency,
                        ttft, ttft + MS, latency, 10, 8, [MS] * 7, ttfo_ns=ttft)


def closed_loop_records(slots: int = 8, seed: int = 11) -> list[MetricRecord]:
    """``slots`` back-to-back chains: slot i starts at i x 10 ms and stops issuing at
    60 - i x 3 s (slots stop one by one, as a count run's leases run out: a long
    ramp-down); a request's latency grows with the slots running when it starts (a loaded
    server), so the ramp-down is faster than the steady part, and the whole run's
    percentiles differ from the steady ones."""
    rng = np.random.default_rng(seed)
    begin = [round(i * 0.01 * S) for i in range(slots)]
    stop = [round((60 - i * 3.0) * S) for i in range(slots)]
    records: list[MetricRecord] = []
    for i in range(slots):
        t = begin[i]
        while t < stop[i]:
            active = sum(b <= t < e for b, e in zip(begin, stop, strict=True))
            latency = round(rng.lognormal(np.log(20.0 * (1 + 0.5 * active)), 0.35) * MS)
            records.append(record(0, T0 + t, latency))
            t += latency + 100_000
    rng.shuffle(records)  # type: ignore[arg-type]
    return [MetricRecord(cid, *(getattr(r, f) for f in r.__struct_fields__[1:]))
            for cid, r in enumerate(records)]


def open_loop_records(seconds: float = 60.0, rate: float = 80.0, seed: int = 5
                      ) -> list[MetricRecord]:
    """Poisson arrivals; the first 6 s are a cold start (latency 3x at 0 s, easing to 1x),
    and 2 % of requests fail."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    starts = np.sort(rng.uniform(0, seconds, n))
    records = []
    for cid, t in enumerate(starts.tolist()):
        start = T0 + round(t * S)
        if rng.random() < 0.02:
            records.append(MetricRecord(cid, PROFILING, "w", start, start, 0, start + 3 * MS,
                                        -1, -1, -1, 10, 0, [],
                                        error=ErrorInfo(500, "Server Error", "x")))
            continue
        cold = 1.0 + 2.0 * max(0.0, 1.0 - t / 6.0)
        latency = round(rng.lognormal(np.log(40.0 * cold), 0.3) * MS)
        records.append(record(cid, start, latency))
    return records


def arrival_order(records: list[MetricRecord], seed: int = 3) -> list[MetricRecord]:
    rng = random.Random(seed)
    return sorted(records, key=lambda r: r.end_ns + rng.randint(0, 30 * MS))


def sketched(records: list[MetricRecord], user: UserConfig, batch: int = 200
             ) -> ProfileResult:
    """As the records manager does it: the aggregator and the tracker fed batch by batch,
    the tracker's span shipped with the windows."""
    aggregator = RunAggregator(user, META, streaming=True)
    tracker = SteadyTracker(user)
    ordered = arrival_order(records)
    for first in range(0, len(ordered), batch):
        aggregator.add(ordered[first:first + batch])
        tracker.add(ordered[first:first + batch])
    out = aggregator.finish([(0, len(records))])
    out["sketch_windows"]["steady"] = tracker.finish(out.get("warmup_start_ns"))
    return ProfileResult.from_dict(out, user)


def exact(records: list[MetricRecord], user: UserConfig) -> ProfileResult:
    out = compute_results(records, user, META, [(0, len(records))], streaming=True)
    return ProfileResult.from_dict(out, user)


def same_requests_p(result: ProfileResult, start_s: float, end_s: float, tag: str,
                    q: float) -> float:
    """The exact run's ``q``-th percentile of ``tag`` over the requests that started in
    [start_s, end_s): what the merged windows hold."""
    base = windows(result, 1.0)
    values = np.concatenate([w.values(tag) for w in base
                             if w.start_s >= start_s - 1e-9 and w.end_s <= end_s + 1e-9])
    return float(np.percentile(values, q))


@pytest.fixture(scope="module")
def closed() -> list[MetricRecord]:
    return closed_loop_records()


def test_closed_loop_steady_window_matches_exact_mode_within_the_sketch_error(
        closed: list[MetricRecord]) -> None:
    sk_user = UserConfig(streaming=True, concurrency=8, sketch=True,
                         sketch_relative_accuracy=ALPHA, slice_duration="1s")
    ex_user = UserConfig(streaming=True, concurrency=8)
    sk, ex = sketched(closed, sk_user), exact(closed, ex_user)
    exact_steady = steady_state(ex, ex_user)
    # The tracker's span is exact mode's, to the nanosecond.
    span = sk._sketch_windows["steady"]  # type: ignore[index]
    assert span["up_s"] == pytest.approx(exact_steady.start_s, abs=1e-9)
    assert span["down_s"] == pytest.approx(exact_steady.end_s, abs=1e-9)
    evidence, why = sketch_steady_state(sk, sk_user)
    assert evidence is not None, why
    # Inward: whole 1 s windows inside the steady span, one cut at each edge left out.
    assert exact_steady.start_s <= evidence.start_s < exact_steady.start_s + 1.0
    assert exact_steady.end_s - 2.0 < evidence.end_s <= exact_steady.end_s
    assert evidence.label.startswith(
        f"steady window {evidence.start_s:.3g}-{evidence.end_s:.3g} s (sketch: ")
    assert "merged 1 s windows of the steady state" in evidence.label
    assert evidence.n_ok < exact_steady.n_ok < ex.request_count
    # The merged sketch is the exact values of the same requests, within alpha.
    for q in (50, 90, 99):
        truth = same_requests_p(ex, evidence.start_s, evidence.end_s, "request_latency", q)
        assert evidence.sketches["request_latency"].quantile(q) == pytest.approx(
            truth, rel=ALPHA * 1.0001)
    # Verdicts: the same as exact mode's steady ones, measured within alpha (plus the
    # trimmed edges' share), where the whole run would decide otherwise.
    steady_p50 = float(np.percentile(exact_steady.values("request_latency"), 50))
    whole_p50 = ex["request_latency"].p50
    assert whole_p50 < steady_p50 * 0.9  # the ramp-down's faster requests pull it down
    threshold = steady_p50 * 0.95
    objectives = [parse_objective("request_latency.p50", f"> {threshold} ms"),
                  parse_objective("request_latency.p99", f"< {steady_p50 * 3} ms"),
                  parse_objective("time_to_first_token.avg", f"> {threshold / 8} ms"),
                  parse_objective("request_throughput", "> 1 req/s")]
    mine = judge_runs(objectives, [sk], sk_user, steady=True, confidence=0.95)
    theirs = judge_runs(objectives, [ex], ex_user, steady=True, confidence=0.95)
    assert [v.status for v in mine] == [v.status for v in theirs] == ["PASS"] * 4
    for a, b in zip(mine[:3], theirs[:3], strict=True):
        assert a.measured == pytest.approx(b.measured, rel=ALPHA + 0.02)
        assert a.window == evidence.label
    whole = judge_runs(objectives[:1], [ex], ex_user, steady=False, confidence=0.95)
    assert whole[0].status == "FAIL"  # the steady window is what made it pass


def test_open_loop_steady_window_drops_the_cold_start_like_exact_mser5() -> None:
    records = open_loop_records()
    sk_user = UserConfig(streaming=True, request_rate=80.0, sketch=True,
                         sketch_relative_accuracy=ALPHA, slice_duration="1s")
    ex_user = UserConfig(streaming=True, request_rate=80.0)
    sk, ex = sketched(records, sk_user), exact(records, ex_user)
    exact_steady = steady_state(ex, ex_user)
    assert exact_steady.start_s > 1.0  # the cold start is dropped
    span = sk._sketch_windows["steady"]  # type: ignore[index]
    # MSER-5 on bins of about one request: truncated near where exact mode's is.
    assert span["kept_from_s"] == pytest.approx(exact_steady.start_s, abs=0.5)
    evidence, why = sketch_steady_state(sk, sk_user)
    assert evidence is not None, why
    assert evidence.start_s >= span["kept_from_s"]  # inward
    assert evidence.start_s < span["kept_from_s"] + 1.0
    assert evidence.end_s == pytest.approx(exact_steady.end_s, abs=1e-6)  # the run's end
    assert "MSER-5 on " in evidence.label and "rounded inward" in evidence.label
    truth = same_requests_p(ex, evidence.start_s, evidence.end_s + 1, "request_latency", 99)
    assert evidence.sketches["request_latency"].quantile(99) == pytest.approx(
        truth, rel=ALPHA * 1.0001)
    p90 = float(np.percentile(exact_steady.values("request_latency"), 90))
    objective = parse_objective("request_latency.p90", f"< {p90 * 1.15} ms")
    [mine] = judge_runs([objective], [sk], sk_user, steady=True, confidence=0.95)
    [theirs] = judge_runs([objective], [ex], ex_user, steady=True, confidence=0.95)
    assert mine.status == theirs.status == "PASS"
    assert mine.measured == pytest.approx(theirs.measured, rel=ALPHA + 0.03)


def shipped(steady: dict[str, Any], base: float = 1.0, end: float = 10.0) -> ProfileResult:
    """A result whose records manager kept ``end`` one-second windows of 10 requests."""
    result = ProfileResult("r", {}, [], [], {}, [], False, None, None)
    windows_ = []
    for k in range(int(end / base)):
        sketch = MetricSketch(ALPHA)
        sketch.add(np.full(10, 100.0 + k))
        windows_.append({"index": k, "start_s": k * base, "n_ok": 10, "n_err": 0,
                         "sketches": {"request_latency": sketch.to_bytes()}})
    result._sketch_windows = {"base_s": base, "offset_s": 0.0, "end_s": end,
                              "windows": windows_, "steady": steady}
    return result


@pytest.mark.parametrize(("up", "cut", "first", "last"), [
    (2.3, 7.2, 3, 6),  # both edges cut a window: both left out
    (3.0, 8.0, 3, 7),  # edges on window boundaries: those windows are whole, kept
    (2.999, 8.001, 3, 7),
    (0.5, 9.9, 1, 8),
])
def test_rounding_to_windows_goes_inward(up: float, cut: float, first: int, last: int
                                         ) -> None:
    config = UserConfig(concurrency=4)
    steady = {"slots": 4, "up_s": up, "down_s": cut + 0.1, "cut_s": cut}
    evidence, _ = sketch_steady_state(shipped(steady), config)
    assert evidence is not None
    assert (evidence.start_s, evidence.end_s) == (first, last + 1)
    assert evidence.n_ok == 10 * (last - first + 1)
    sketch = evidence.sketches["request_latency"]
    assert (sketch.min, sketch.max) == (100 + first, 100 + last)  # no ramp window's value
    assert evidence.label == (
        f"steady window {first}-{last + 1} s (sketch: {last - first + 1} merged 1 s windows "
        f"of the steady state {up:.3g}-{cut + 0.1:.3g} s, rounded inward)")


def test_a_concurrency_ramp_that_outlasts_the_warm_up_bounds_the_sketch_window() -> None:
    """The ramp runs once a run, from the warm-up's start: the profiling phase, whose first
    start is the windows' origin, may begin inside it. Its end, 0.6 s (+ slack) at most
    from that origin, bounds the window even when the tracker's ramp-up ended earlier."""
    config = UserConfig(concurrency=4, concurrency_ramp_duration=0.6, warmup_request_count=5)
    steady = {"slots": 4, "up_s": 0.15, "down_s": 9.5, "cut_s": 9.5}
    evidence, _ = sketch_steady_state(shipped(steady, base=0.25), config)
    assert evidence is not None and evidence.start_s >= 0.6


def ramp_done_in_the_warm_up(slots: int = 4) -> list[MetricRecord]:
    """``slots`` chains of 50 ms requests, all running through 3 s of profiling, after a
    6 s warm-up (phase WARMUP) in which a 5 s ramp started them one by one."""
    records: list[MetricRecord] = []
    for slot in range(slots):
        began = -6 * S + slot * (5 * S // max(slots - 1, 1))
        for t in range(began, 3 * S - 50 * MS, 50 * MS):
            one = record(len(records), T0 + t + slot * MS, 50 * MS)
            records.append(msgspec.structs.replace(one, phase=WARMUP) if t < 0 else one)
    return records


@pytest.mark.parametrize("slots", [4, 1])
def test_a_ramp_over_before_profiling_leaves_the_sketch_window_steady(slots: int) -> None:
    """A 5 s ramp done in a 6 s warm-up (or no ramp at all: one slot), 3 s of profiling:
    bounded from profiling's start, the ramp left no steady window and every steady
    objective FAILed. The tracker keeps the warm-up's start; both modes agree."""
    records = ramp_done_in_the_warm_up(slots)
    common = {"streaming": True, "concurrency": slots, "concurrency_ramp_duration": 5.0,
              "warmup_request_count": 10}
    sk_user = UserConfig(**common, sketch=True, sketch_relative_accuracy=ALPHA,
                         slice_duration="0.5s")
    ex_user = UserConfig(**common)
    sk, ex = sketched(records, sk_user), exact(records, ex_user)
    objective = parse_objective("request_latency.p50", "< 200 ms")
    [mine] = judge_runs([objective], [sk], sk_user, steady=True, confidence=0.95)
    [theirs] = judge_runs([objective], [ex], ex_user, steady=True, confidence=0.95)
    assert mine.status == theirs.status == "PASS"
    evidence, why = sketch_steady_state(sk, sk_user)
    assert evidence is not None and evidence.n_ok > 0, why
    assert evidence.start_s == pytest.approx(0.5)  # the first whole window after ramp-up
    span = sk._sketch_windows["steady"]  # type: ignore[index]
    assert span["warmup_s"] == pytest.approx(-6.0 - 1e-4, abs=1e-9)  # its first credit


def test_without_the_warm_ups_start_the_sketch_ramp_stays_conservative() -> None:
    """A stored span without ``warmup_s`` (no warm-up, or an older result): the ramp is
    bounded from profiling's first start, and the label names the ramp."""
    config = UserConfig(concurrency=4, concurrency_ramp_duration=5.0, warmup_request_count=5)
    steady = {"slots": 4, "up_s": 0.05, "down_s": 3.0, "cut_s": 3.0}
    evidence, _ = sketch_steady_state(shipped(steady, base=0.5, end=3.0), config)
    assert evidence is not None and evidence.n_ok == 0
    assert evidence.label == ("steady state: none (the concurrency ramp, to 5.05 s, left "
                              "no steady part)")
    # Known, it moves the bound back by the warm-up's length, never before 0.
    for warmup_s, first in ((-4.4, 1.0), (-6.0, 0.5)):  # ramp to 0.65 s; to none
        known, _ = sketch_steady_state(shipped({**steady, "warmup_s": warmup_s}, base=0.5,
                                               end=3.0), config)
        assert known is not None and known.start_s == pytest.approx(first)


def test_a_steady_span_within_one_window_is_judged_whole_and_says_why() -> None:
    config = UserConfig(concurrency=4)
    result = shipped({"slots": 4, "up_s": 2.2, "down_s": 2.9, "cut_s": 2.9})
    evidence, why = sketch_steady_state(result, config)
    assert evidence is None and "no whole 1 s window lies inside" in why
    sketch = MetricSketch(ALPHA)
    sketch.add(np.linspace(90.0, 110.0, 100))
    result.metrics = {"request_latency": MetricResult("request_latency", "ms", {}, (), 0, (),
                                                      sketch)}
    [verdict] = judge_runs([parse_objective("request_latency.p50", "< 200 ms")], [result],
                           config, steady=True, confidence=0.95)
    assert verdict.status == "PASS" and verdict.count == 100  # the whole run's sketch
    assert verdict.window.startswith("whole run (sketch mode: no steady window: no whole "
                                     "1 s window lies inside the steady state 2.2-2.9 s")


def _with_whole_run_sketch(result: ProfileResult, tag: str) -> ProfileResult:
    sketch = MetricSketch(ALPHA)
    sketch.add(np.linspace(5.0, 15.0, 100))
    result.metrics = {tag: MetricResult(tag, "tokens", {}, (), 0, (), sketch)}
    return result


def test_a_metric_not_kept_per_window_is_inconclusive_on_pooled_steady_windows() -> None:
    """Several runs (extend) pooled in sketch mode: their steady windows keep sketches of a
    few latencies only. Another per-request metric is not judged on nothing (a FAIL),
    whether every run has a steady window or one fell back to its whole run."""
    config = UserConfig(concurrency=4)
    objective = parse_objective("output_sequence_length.avg", "< 100")
    steady = {"slots": 4, "up_s": 2.3, "down_s": 7.3, "cut_s": 7.2}
    both = [_with_whole_run_sketch(shipped(steady), "output_sequence_length")
            for _ in range(2)]
    narrow = {"slots": 4, "up_s": 2.2, "down_s": 2.9, "cut_s": 2.9}  # no whole window
    mixed = [both[0], _with_whole_run_sketch(shipped(narrow), "output_sequence_length")]
    for results in (both, mixed):
        [verdict] = judge_runs([objective], results, config, steady=True, confidence=0.95)
        assert (verdict.status, verdict.method) == ("INCONCLUSIVE", "not kept per window")
        assert verdict.window.startswith("steady window 3-7 s")
    # The label says when the pool mixes steady windows and a whole run.
    assert verdict.window.endswith(
        "(+1 runs pooled); 1 of the 2 runs whole: no steady window")
    # A latency the windows keep is judged on them, pooled.
    [kept] = judge_runs([parse_objective("request_latency.p50", "< 200 ms")], both, config,
                        steady=True, confidence=0.95)
    assert kept.status == "PASS" and kept.count == 2 * 40


@pytest.mark.parametrize("pooled", [False, True], ids=["one run", "two runs pooled"])
@pytest.mark.parametrize("text", ["< 5", "> 5"])
def test_a_count_of_a_metric_not_kept_per_window_is_inconclusive(pooled: bool, text: str
                                                                 ) -> None:
    """The windows keep no output_sequence_length, so its count there is not 0 but unknown:
    ``count < 5`` passed on that 0 (steady window, pooled or not, and a fixed window)."""
    config = UserConfig(concurrency=4)
    steady = {"slots": 4, "up_s": 2.3, "down_s": 7.3, "cut_s": 7.2}
    runs = [_with_whole_run_sketch(shipped(steady), "output_sequence_length")
            for _ in range(2 if pooled else 1)]
    for metric, on_steady in (("output_sequence_length.count", True),
                              ("output_sequence_length.count@2s", False)):
        [verdict] = judge_runs([parse_objective(metric, text)], runs, config,
                               steady=on_steady, confidence=0.95)
        assert (verdict.status, verdict.method) == ("INCONCLUSIVE", "not kept per window")
        assert verdict.measured is None


def test_a_pooled_empty_steady_window_leaves_the_other_runs_sketches_judged() -> None:
    """One run's steady window is empty (never full concurrency): it has no sketch, which
    discarded every other run's and made the pool 'not measured', a FAIL where exact mode
    judges the good runs. Its failures still count as adj_ values."""
    config = UserConfig(concurrency=4)
    steady = {"slots": 4, "up_s": 2.3, "down_s": 7.3, "cut_s": 7.2}
    empty = {"slots": 4, "why": "never 4 requests in flight at once"}
    good = _with_whole_run_sketch(shipped(steady), "request_latency")
    none = _with_whole_run_sketch(shipped(empty), "request_latency")
    objective = parse_objective("request_latency.p50", "< 200 ms")
    [alone] = judge_runs([objective], [good], config, steady=True, confidence=0.95)
    [pooled] = judge_runs([objective], [good, none], config, steady=True, confidence=0.95)
    assert alone.status == pooled.status == "PASS"
    assert pooled.count == alone.count == 40
    [pooled_none] = judge_runs([objective], [none, none], config, steady=True,
                               confidence=0.95)
    assert pooled_none.status == "FAIL"  # still nothing measured when no run has any


def test_a_pooled_empty_window_keeps_its_failures_as_adjusted_values() -> None:
    from pytest_aiperf.judge import PooledEvidence, SketchEvidence

    sketch = MetricSketch(ALPHA)
    sketch.add(np.full(10, 100.0))
    full = SketchEvidence("a", 10, 1, 1.0, {"request_latency": sketch})
    empty = SketchEvidence("b", 0, 3, 1.0)
    pooled = PooledEvidence([full, empty])
    adjusted = pooled.sketched("adj_request_latency")
    assert adjusted is not None and adjusted.failures == 1 + 3
    plain = pooled.sketched("request_latency")
    assert plain is not None and (plain.failures, plain.sketch.count) == (0, 10)



def test_a_pooled_window_without_a_kept_metrics_values_leaves_the_others_judged() -> None:
    """A window whose answers were all one token long has no inter-token latency: pooled
    with one that has 1,000 values, the pool holds those 1,000 (it once held none, so
    "count < 5" passed on 0 and a percentile was "not measured")."""
    from pytest_aiperf.judge import PooledEvidence, SketchEvidence, judge

    def sketch_of(n: int) -> MetricSketch:
        sketch = MetricSketch(ALPHA)
        sketch.add(np.full(n, 5.0))
        return sketch

    tokens = SketchEvidence("a", 1000, 0, 10.0, {"inter_token_latency": sketch_of(1000),
                                                 "request_latency": sketch_of(1000)})
    one_token = SketchEvidence("b", 50, 2, 10.0, {"request_latency": sketch_of(50)})
    pooled = PooledEvidence([tokens, one_token])
    count = judge(parse_objective("inter_token_latency.count", "< 5"), pooled)
    assert (count.status, count.measured) == ("FAIL", 1000)
    p50 = judge(parse_objective("inter_token_latency.p50", "< 100 ms"), pooled)
    assert p50.status == "PASS" and p50.count == 1000
    adjusted = pooled.sketched("adj_inter_token_latency")
    assert adjusted is not None and adjusted.failures == 2


def test_a_closed_loop_that_never_filled_its_slots_has_an_empty_steady_window() -> None:
    config = UserConfig(concurrency=4)
    evidence, _ = sketch_steady_state(
        shipped({"slots": 4, "why": "never 4 requests in flight at once"}), config)
    assert evidence is not None and evidence.n_ok + evidence.n_err == 0
    assert evidence.label == "steady state: none (never 4 requests in flight at once)"


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(1, 40)), min_size=1,
                max_size=120), st.integers(1, 6), st.integers(0, 1000))
def test_the_trackers_ramp_is_exact_modes_whatever_it_keeps(
        spans: list[tuple[int, int]], slots: int, seed: int) -> None:
    """The tail it keeps is bounded (here to a few records, trimmed as it grows): its
    ramp-down is exact mode's whenever that lies among the kept ends, else unknown."""
    tracker = SteadyTracker(UserConfig(concurrency=slots))
    tracker.keep = 8
    # Starts a nanosecond apart at least (real ones never tie: exact mode breaks a tie by
    # arrival order, which is no property of the run).
    starts = [s * MS + i for i, (s, _) in enumerate(spans)]
    records = [record(i, T0 + t, d * MS)
               for i, (t, (_, d)) in enumerate(zip(starts, spans, strict=True))]
    random.Random(seed).shuffle(records)
    for first in range(0, len(records), 5):
        tracker.add(records[first:first + 5])
    found = tracker.finish()
    start = np.array(starts, dtype=np.float64) / S
    end = start + np.array([d * MS for _, d in spans], dtype=np.float64) / S
    ramp = _closed_loop_ramp(start - start.min(), end - start.min(), slots)
    if found.get("unknown"):
        assert tracker._floor is not None
        assert ramp is None or ramp[1] <= (tracker._floor - T0) / S - start.min() + 1e-9
    elif ramp is None:
        assert "up_s" not in found
    else:
        assert (found["up_s"], found["down_s"]) == pytest.approx(ramp, abs=1e-9)
        assert found["cut_s"] <= found["down_s"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(1.0, 100.0), min_size=10, max_size=200))
def test_binned_mser5_with_five_requests_a_bin_is_mser5(values: list[float]) -> None:
    data = np.asarray(values)
    m = data.size // 5
    counts = np.full(m, 5.0)
    sums = data[:m * 5].reshape(m, 5).sum(axis=1)
    dropped, first_kept = binned_mser5(counts, sums)
    assert dropped == mser5(data)
    assert first_kept == dropped // 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**11), st.integers(1, 10**9)), min_size=1,
                max_size=300), st.integers(1, 50), st.integers(0, 1000))
def test_the_open_loop_bins_hold_each_requests_latency_whatever_the_order(
        pairs: list[tuple[int, int]], batch: int, seed: int) -> None:
    """Bins double as the run outgrows them (here up to 100 s of 1 ms bins): each bin's
    count and latency sum are those of the requests that started in it."""
    tracker = SteadyTracker(UserConfig(request_rate=10.0))
    records = [record(i, T0 + start, latency) for i, (start, latency) in enumerate(pairs)]
    random.Random(seed).shuffle(records)
    for first in range(0, len(records), batch):
        tracker.add(records[first:first + batch])
    assert tracker._counts.size <= SteadyTracker.MAX_BINS
    keys = np.array([(T0 + s) // tracker.width_ns for s, _ in pairs]) - tracker._lo
    assert keys.min() >= 0
    counts = np.bincount(keys, minlength=tracker._counts.size)
    sums = np.bincount(keys, weights=[d / 1e6 for _, d in pairs],
                       minlength=tracker._counts.size)
    assert tracker._counts.tolist() == counts.tolist()
    assert tracker._sums == pytest.approx(sums, rel=1e-12, abs=1e-9)
