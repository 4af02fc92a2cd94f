"""Samples of a run on hand-built timelines whose answers are known: the whole run, a
closed-loop ramp, an open-loop warm-up, windows with known percentiles, time slices."""

from __future__ import annotations

import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord, cancellation
from aiperf.common.config import UserConfig
from aiperf.exporters.base import export_files
from aiperf.metrics.aggregate import compute_results
from aiperf.plugin import PluginType, plugins
from aiperf.results import ProfileResult
from aiperf.windows import Sample, slices, steady_state, whole_run, windows
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.slo import parse_objective

MS = 1_000_000


def ok(cid: int, start_ms: float, latency_ms: float, osl: int = 5, isl: int = 10,
       ttft_ms: float = 1.0, gaps: list[int] | None = None, phase: int = PROFILING
       ) -> MetricRecord:
    start = round(start_ms * MS)
    latency = round(latency_ms * MS)
    return MetricRecord(cid, phase, "w", start - MS, start, 0, start + latency,
                        round(ttft_ms * MS), -1, latency, isl, osl, gaps or [])


def failed(cid: int, start_ms: float, took_ms: float = 5.0) -> MetricRecord:
    start = round(start_ms * MS)
    return MetricRecord(cid, PROFILING, "w", start, start, 0, start + round(took_ms * MS),
                        -1, -1, -1, 10, 0, [], error=ErrorInfo(500, "Server Error", "boom"))


def run(records: list[MetricRecord], config: UserConfig | None = None,
        streaming: bool = True) -> ProfileResult:
    config = config or UserConfig(streaming=streaming)
    meta = plugins.get_metadata(PluginType.ENDPOINT, config.endpoint_type)
    out = compute_results(records, config, meta, [(0, len(records))],  # type: ignore[arg-type]
                          streaming=streaming)
    return ProfileResult.from_dict(out, config)


def closed_loop(slots: int, per_slot: int, latency_ms: float, stagger_ms: float
                ) -> list[MetricRecord]:
    """``slots`` back-to-back request chains; slot k starts ``k * stagger_ms`` late."""
    records = []
    for k in range(slots):
        for j in range(per_slot):
            records.append(ok(len(records), k * stagger_ms + j * latency_ms, latency_ms))
    return records


def test_whole_run_is_every_request_over_the_benchmark_duration() -> None:
    result = run([ok(0, 0, 100), ok(1, 50, 150), failed(2, 10)])
    sample = whole_run(result)
    assert (sample.label, sample.n_ok, sample.n_err) == ("whole run", 2, 1)
    assert sample.duration_s == pytest.approx(0.2) == result.metric("benchmark_duration")
    assert sorted(sample.values("request_latency")) == [100.0, 150.0]
    assert list(sample.values("adj_request_latency")) == [100.0, 150.0, np.inf]
    assert sample.scalar("request_throughput") == result.metric("request_throughput")
    assert sample.scalar("request_error_rate") == pytest.approx(100 / 3)


def test_closed_loop_steady_state_starts_when_every_slot_finished_its_first_request() -> None:
    # Two slots of 100 ms requests, the second 30 ms late: ramp-up ends when the late slot's
    # first request ends (130 ms); the early slot stops first (its tenth ends at 1000 ms).
    result = run(closed_loop(slots=2, per_slot=10, latency_ms=100, stagger_ms=30))
    sample = steady_state(result, UserConfig(concurrency=2))
    assert sample.start_s == pytest.approx(0.13)
    assert sample.end_s == pytest.approx(1.0)
    assert sample.label == "steady state 0.13-1 s"
    # Started at or after 130 ms and ended by 1000 ms: slot 0's 3rd..10th (200..900 ms),
    # slot 1's 2nd..9th (130..830 ms).
    assert (sample.n_ok, sample.n_err) == (8 + 8, 0)
    assert sample.duration_s == pytest.approx(0.87)
    assert sample.scalar("request_throughput") == pytest.approx(16 / 0.87)


def test_a_closed_loop_that_never_fills_its_slots_has_no_steady_state() -> None:
    result = run(closed_loop(slots=2, per_slot=3, latency_ms=10, stagger_ms=0))
    sample = steady_state(result, UserConfig(concurrency=4))
    assert sample.n_ok == sample.n_err == 0 and "none" in sample.label


def ramp_outlasting_the_warm_up() -> list[MetricRecord]:
    """The profiling records of concurrency 4 with a 0.6 s ramp and a warm-up that took
    0.1 s: the ramp (timing/concurrency.py, once a run) began with the warm-up, so slot g
    starts at -0.1 + 0.2 g s of the profiling phase's clock; slots 1-3 start inside it."""
    records: list[MetricRecord] = []
    for slot in range(4):
        first = max(0.0, -100 + 200 * slot)
        for j in range(int((2000 - first) // 50)):
            records.append(ok(len(records), first + 50 * j, 50))
    return records


def test_a_concurrency_ramp_that_outlasts_the_warm_up_stays_out_of_steady_state() -> None:
    # Slot 0 alone fills the four earliest starts, so without the ramp's bound ramp-up would
    # end at 0.15 s, with one slot of four running: a latency judged there is under-loaded.
    config = UserConfig(concurrency=4, concurrency_ramp_duration=0.6, warmup_request_count=2)
    result = run(ramp_outlasting_the_warm_up(), config)
    sample = steady_state(result, config)
    start_s = (result.timeline.start_ns - result.timeline.start_ns.min()) / 1e9
    last_slot_first_end = 0.5 + 0.05
    assert sample.start_s >= last_slot_first_end
    assert start_s[sample.members].min() >= last_slot_first_end
    assert sample.n_ok > 0


def warm_up(records: list[MetricRecord], starts_ms: list[float], latency_ms: float = 50
            ) -> list[MetricRecord]:
    """Warm-up records (phase WARMUP) starting at ``starts_ms`` of the profiling phase's
    clock (negative: before it), numbered after ``records``."""
    return [ok(len(records) + i, t, latency_ms, phase=WARMUP) for i, t in enumerate(starts_ms)]


def test_a_known_warm_up_start_bounds_the_ramp_from_where_it_began() -> None:
    """The same run as above with its warm-up's records: the ramp began with them (the
    earliest credit at -0.101 s), so it ends 0.6 s (+ slack) later, at 0.549 s of profiling,
    not 0.65 s: steady state starts when the last slot's first request ends (0.55 s)."""
    config = UserConfig(concurrency=4, concurrency_ramp_duration=0.6, warmup_request_count=2)
    profiling = ramp_outlasting_the_warm_up()
    result = run(profiling + warm_up(profiling, [-100, -50]), config)
    assert result._warmup_start_ns == (-100 - 1) * MS  # its credit, 1 ms before its start
    sample = steady_state(result, config)
    assert sample.start_s == pytest.approx(0.55)
    # Never shorter than the truth: no request of the ramp's last slot before its first end.
    start_s = (result.timeline.start_ns - result.timeline.start_ns.min()) / 1e9
    assert start_s[sample.members].min() >= 0.55


def four_slots_from_the_start(profiling_ms: float = 3000) -> list[MetricRecord]:
    """Concurrency 4, every slot running from the profiling phase's start (1 ms apart)."""
    starts = [slot + 50 * j for slot in range(4) for j in range(int(profiling_ms // 50))]
    return [ok(i, t, 50) for i, t in enumerate(starts)]


def test_a_warm_up_that_outlasted_the_ramp_leaves_profiling_steady() -> None:
    """A 5 s ramp done in a 6 s warm-up, 3 s of profiling: the ramp is over before
    profiling starts. Bounded from profiling's start it left no steady state, and every
    steady objective FAILed, its label saying 'never 4 requests in flight at once'."""
    config = UserConfig(concurrency=4, concurrency_ramp_duration=5.0,
                        warmup_request_count=500)
    profiling = four_slots_from_the_start()
    warm = warm_up(profiling, [-6000 + slot * 1667 + 50 * j for slot in range(4)
                               for j in range(int((6000 - slot * 1667) // 50) - 1)])
    result = run(profiling + warm, config)
    sample = steady_state(result, config)
    assert sample.n_ok > 200 and sample.start_s == pytest.approx(0.053)
    [verdict] = judge_runs([parse_objective("request_latency.p50", "< 200 ms")], [result],
                           config, steady=True, confidence=0.95)
    assert verdict.status == "PASS"
    # An old result, without the warm-up's start: the ramp is bounded from profiling's
    # start (conservative), and the label names the ramp, not the concurrency.
    old = run(profiling, config)
    none = steady_state(old, config)
    assert none.n_ok == 0
    assert none.label == "steady state: none (the concurrency ramp, to 5.05 s, left no " \
        "steady part)"


def test_a_ramp_of_one_slot_is_no_ramp() -> None:
    """timing/concurrency.py makes no ramp with fewer than two slots: concurrency 1 with a
    5 s ramp is steady once its first request ends, not after 5 s (a false 'none')."""
    config = UserConfig(concurrency=1, concurrency_ramp_duration=5.0)
    result = run([ok(j, 50 * j, 50) for j in range(60)], config)
    sample = steady_state(result, config)
    # Ramp-down at the last end: one in flight until then, all but the first are steady.
    assert sample.start_s == pytest.approx(0.05) and sample.n_ok == 59


@pytest.fixture
def mser5_drops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A stand-in for the statistics package's MSER-5 that drops a set number and
    records the series it was given (so the test checks what windows.py does with it)."""
    calls: list[int] = []
    module = types.ModuleType("aiperf.statistics")

    def mser5(series: np.ndarray) -> int:
        calls.append(len(series))
        assert list(series[:3]) == [500.0, 490.0, 480.0]  # ordered by start, not arrival
        return 3

    module.mser5 = mser5  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiperf.statistics", module)
    return calls


def test_open_loop_steady_state_drops_the_warm_up_mser5_finds(mser5_drops: list[int]) -> None:
    slow = [ok(i, 10 * i, 500 - 10 * i) for i in range(3)]
    fast = [ok(3 + i, 100 + 10 * i, 20) for i in range(20)]
    result = run([*fast, *reversed(slow), failed(23, 5), failed(24, 150)])
    sample = steady_state(result, UserConfig(request_rate=100))
    assert mser5_drops == [23]
    assert sample.start_s == pytest.approx(0.1)
    assert (sample.n_ok, sample.n_err) == (20, 1)  # the failure at 5 ms is warm-up too
    assert "MSER-5 dropped the first 3 requests, up to 0.1 s" in sample.label
    assert set(sample.values("request_latency")) == {20.0}


def test_open_loop_warm_up_with_the_real_mser5() -> None:
    statistics = pytest.importorskip("aiperf.statistics")
    assert hasattr(statistics, "mser5")
    rng = np.random.default_rng(1)
    warm = [ok(i, 5 * i, 400.0 - 4 * i) for i in range(50)]
    steady = [ok(50 + i, 250 + 5 * i, float(20 + rng.normal(0, 1))) for i in range(1000)]
    sample = steady_state(run([*warm, *steady]), UserConfig(request_rate=200))
    assert 0.2 <= sample.start_s <= 0.3  # the warm-up (up to 245 ms) is cut, little else
    assert sample.values("request_latency").max() < 30


def test_windows_partition_the_run_by_start_and_know_their_p99() -> None:
    # Window k (1 s each) holds 100 requests of latency k*100 + 1..100 ms: p99 known.
    records = [ok(100 * k + i, 1000 * k + 5 * i, 100 * k + i + 1)
               for k in range(3) for i in range(100)]
    records.append(failed(300, 1500))
    result = run(records)
    found = windows(result, 1.0)
    assert [w.label for w in found] == ["window 0-1 s", "window 1-2 s",
                                       f"window 2-{found[-1].end_s:.3g} s"]
    assert sum(w.n_ok for w in found) == 300 and sum(w.n_err for w in found) == 1
    for k, window in enumerate(found):
        expected = np.arange(1, 101) + 100 * k
        assert window.values("request_latency").tolist() == expected.tolist()
        assert np.percentile(window.values("request_latency"), 99) == pytest.approx(
            np.percentile(expected, 99))
    assert found[1].n_err == 1 and found[1].values("adj_request_latency")[-1] == np.inf
    assert found[0].scalar("request_throughput") == pytest.approx(100.0)
    last = found[-1]
    assert last.end_s == pytest.approx(result.metric("benchmark_duration"))
    assert last.duration_s == pytest.approx(last.end_s - 2.0)


def test_windows_refuse_a_length_that_is_not_positive() -> None:
    result = run([ok(0, 0, 10)])
    for bad in (0, -1.0, float("nan"), float("inf"), "1s"):
        with pytest.raises(ValueError, match="positive number of seconds"):
            windows(result, bad)  # type: ignore[arg-type]
    long_run = run([ok(0, 0, 10), ok(1, 100_000, 10)])  # 100.01 s
    with pytest.raises(ValueError, match=r"into 100,010 windows; .* at least 0\.010001 s"):
        windows(long_run, 0.001)
    assert len(windows(long_run, 0.02)) == 5_001


def test_throughput_windows_count_completions_where_they_ended() -> None:
    # 10 ok requests ending at 50, 150, ..., 950 ms, each 4 output + 10 input tokens; a
    # failure ends the run at 1 s.
    result = run([*(ok(i, 0, 50 + 100 * i, osl=4) for i in range(10)), failed(10, 990, 10)])
    sample = whole_run(result)
    assert sample.duration_s == pytest.approx(1.0)
    per_window = sample.throughput_windows("request_throughput", n_windows=5)
    assert per_window.tolist() == pytest.approx([10.0] * 5)  # two a window of 0.2 s
    tokens = sample.throughput_windows("output_token_throughput", n_windows=5)
    assert tokens.tolist() == pytest.approx([40.0] * 5)
    total = sample.throughput_windows("total_token_throughput", n_windows=2)
    assert total.sum() * 0.5 == pytest.approx(140)
    with pytest.raises(KeyError, match="not a throughput"):
        sample.throughput_windows("request_latency")


def test_goodput_on_a_window_uses_the_runs_thresholds() -> None:
    config = UserConfig(streaming=True, goodput={"request_latency": 50})
    records = [ok(0, 0, 40), ok(1, 0, 60), ok(2, 1000, 10), failed(3, 1100)]
    result = run(records, config)
    first, second = windows(result, 1.0)
    assert first.scalar("good_request_count") == 1
    assert second.scalar("good_request_count") == 1
    assert second.scalar("good_request_fraction") == pytest.approx(0.5)
    assert whole_run(result).scalar("goodput") == result.metric("goodput")


def test_a_sample_names_what_it_does_not_have() -> None:
    sample = whole_run(run([ok(0, 0, 10)]))
    for bad in ("ttft", "adj_input_sequence_length", "request_throughput"):
        with pytest.raises(KeyError, match=f"no per-request metric '{bad}'"):
            sample.values(bad)
    assert sample.values("time_to_second_token").size == 0  # a metric no request carried
    with pytest.raises(KeyError, match="not a run-level metric"):
        sample.scalar("request_latency")


def test_a_result_without_a_timeline_is_judged_whole_only() -> None:
    result = ProfileResult.from_dict({"metrics": {
        "request_latency": {"unit": "ms", "avg": 1.0}}, "values": {
        "request_latency": np.array([1.0]).tobytes()}})
    assert len(result.timeline) == 0 and windows(result, 1.0) == []
    with pytest.raises(ValueError, match="no record index"):
        Sample("x", 0, 1, 1, 0, 1, result, np.ones(0, dtype=bool)).values("request_latency")


def test_slices_follow_aiperfs_export_and_their_counts_sum_to_the_run(tmp_path: Path) -> None:
    config = UserConfig(streaming=True, slice_duration="500ms")
    records = [ok(i, 100 * i, 50, gaps=[MS, 2 * MS]) for i in range(12)]
    records += [failed(12, 120), ok(13, 0, 10, phase=WARMUP)]
    result = run(records, config)
    rows = result.slices
    assert rows == slices(result, 0.5)
    assert [r["request_count"]["avg"] for r in rows] == [5, 5, 2]
    assert sum(r.get("error_request_count", {}).get("avg", 0) for r in rows) == 1
    assert "is_complete" not in rows[0] and rows[-1]["is_complete"] is False
    assert rows[1]["end_ns"] - rows[1]["start_ns"] == 500 * MS
    assert rows[0]["inter_chunk_latency"]["count"] == 10  # two gaps a request
    export_files(result, tmp_path)
    document = json.loads((tmp_path / "profile_export_aiperf_timeslices.json").read_text())
    assert len(document["timeslices"]) == 3
    assert document["input_config"]["slice_duration"] == 0.5
    assert "p99" not in document["timeslices"][0]["adj_request_latency"]  # +inf: left out
    with (tmp_path / "profile_export_aiperf_timeslices.csv").open() as handle:
        table = list(csv.DictReader(handle))
    counts = [r for r in table if r["Metric"] == "Request Count"]
    assert [(r["Timeslice"], r["Stat"], r["Value"]) for r in counts] == [
        ("0", "avg", "5.00"), ("1", "avg", "5.00"), ("2", "avg", "2.00")]
    assert run(records).slices == []  # no slice_duration: no slices


def test_slice_duration_is_read_like_every_duration() -> None:
    assert UserConfig(slice_duration="2m").slice_duration == 120
    with pytest.raises(ValueError, match="slice_duration"):
        UserConfig(slice_duration=0)


# -- whole_run reproduces the run's own statistics exactly -----------------------------------

records_strategy = st.lists(
    st.tuples(
        st.integers(0, 5_000),  # start, ms
        st.integers(1, 2_000),  # latency, ms
        st.integers(0, 40),  # osl
        st.integers(1, 50),  # isl
        st.lists(st.integers(1, 10 * MS), max_size=3),  # chunk gaps
        st.sampled_from(["ok", "ok", "ok", "error", "cancelled", "unsent"]),
    ),
    min_size=1, max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records_strategy, st.booleans())
def test_whole_run_reproduces_the_runs_statistics_exactly(
        spec: list[tuple[int, int, int, int, list[int], str]], streaming: bool) -> None:
    records = []
    for cid, (start_ms, latency_ms, osl, isl, gaps, kind) in enumerate(spec):
        if kind == "ok":
            records.append(ok(cid, start_ms, latency_ms, osl=osl, isl=isl,
                              ttft_ms=min(latency_ms, 3), gaps=gaps))
        elif kind == "error":
            records.append(failed(cid, start_ms, latency_ms))
        else:
            start = start_ms * MS
            sent = 0 if kind == "unsent" else start
            records.append(MetricRecord(cid, PROFILING, "w", start, sent, 0, start, -1, -1, -1,
                                        isl, 0, [], error=cancellation("cut"), cancelled=True))
    config = UserConfig(streaming=streaming,
                        goodput={"request_latency": 1000, "credit_to_start_latency": 0.5})
    meta = plugins.get_metadata(PluginType.ENDPOINT, "chat")
    out = compute_results(records, config, meta, [(0, len(records))],  # type: ignore[arg-type]
                          streaming=streaming)
    result = ProfileResult.from_dict(out, config)
    assert whole_run(result).metrics() == out["metrics"]
    assert sum(w.n_ok + w.n_err for w in windows(result, 0.7)) == len(records)


def _ramp_by_event_sweep(start_s: np.ndarray, end_s: np.ndarray,
                         target: int) -> tuple[float, float] | None:
    """The ramp by its definition, one event at a time (a start before an end at one
    instant): ramp-up ends when the first ``target`` requests have finished, ramp-down
    starts at the event after the last moment ``target`` were in flight."""
    if start_s.size < target:
        return None
    up = float(end_s[np.argsort(start_s, kind="stable")[:target]].max())
    events = sorted([(t, 0) for t in start_s] + [(t, 1) for t in end_s])
    in_flight, last_full = 0, None
    for i, (_, is_end) in enumerate(events):
        in_flight += -1 if is_end else 1
        if in_flight >= target:
            last_full = i
    if last_full is None:
        return None
    down = events[last_full + 1][0]
    return (up, float(down)) if down > up else None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 30)), min_size=1, max_size=40),
       st.integers(1, 8))
def test_the_closed_loop_ramp_matches_its_definition(
    spans: list[tuple[int, int]], target: int
) -> None:
    from aiperf.windows import _closed_loop_ramp

    start = np.array([s / 10 for s, _ in spans])
    end = np.array([(s + d) / 10 for s, d in spans])
    assert _closed_loop_ramp(start, end, target) == _ramp_by_event_sweep(start, end, target)


def test_sketch_mode_splits_throughput_by_its_binned_completions() -> None:
    """No timeline in sketch mode: the records manager's bins of end time give the same
    windows as the exact run's timeline (the bins, 10 ms here, fit the windows), and a
    throughput objective is decided on them (it was judged on empty windows, as 0)."""
    from pytest_aiperf.judge import ResultEvidence, judge
    from pytest_aiperf.slo import parse_objective

    records = [*(ok(i, 7 * i, 30 + (i % 13), osl=3 + i % 5, isl=10 + i % 3)
                 for i in range(400)), failed(400, 1500), failed(401, 2990, took_ms=10)]
    exact = whole_run(run(records))
    sketched = run(records, UserConfig(streaming=True, sketch=True))
    assert len(sketched.timeline) == 0 and sketched["request_latency"].sketch is not None
    sample = whole_run(sketched)
    for tag in ("request_throughput", "output_token_throughput", "total_token_throughput"):
        assert sample.throughput_windows(tag, 6).tolist() == pytest.approx(
            exact.throughput_windows(tag, 6).tolist()), tag
    assert np.isnan(sample.throughput_windows("goodput")).all()  # not binned: unmeasured
    verdict = judge(parse_objective("request_throughput", ">= 100 req/s"),
                    ResultEvidence(sketched))
    low = verdict.interval[0]
    assert verdict.status == "PASS" and low is not None and low > 100
    # A result that kept no bins (an older records manager): not measured, not 0.
    sketched._end_bins = None
    assert np.isnan(whole_run(sketched).throughput_windows("request_throughput")).all()
