"""Sketch mode's time windows: the records manager's aggregator keeps a sketch per metric
per base window as records come (in any order), the host merges base windows into longer
ones, and a windowed objective is decided on them, matching the exact run's windows within
the sketch's relative accuracy."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord
from aiperf.common.config import UserConfig
from aiperf.metrics.aggregate import (
    WINDOW_METRICS,
    RunAggregator,
    _SketchWindows,
    compute_results,
    write_msgpack,
)
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import EndpointMetadata
from aiperf.results import ProfileResult
from aiperf.statistics.sketch import MetricSketch
from aiperf.windows import windows
from pytest_aiperf.judge import judge_runs
from pytest_aiperf.slo import parse_objective

MS = 1_000_000
S = 1_000_000_000
META = plugins.get_metadata(PluginType.ENDPOINT, "chat")
assert isinstance(META, EndpointMetadata)
ALPHA = 0.01
T0 = 5_000 * S  # perf_counter ns of the run's first start


def soak_records(seconds: float, rate: float, seed: int = 7, creep_after_s: float = 1e9
                 ) -> list[MetricRecord]:
    """Open-loop streamed requests at ``rate``/s over ``seconds``: lognormal TTFT and token
    gaps, 3 % failures (a few of them before the request was sent), TTFT 4x slower for
    requests started after ``creep_after_s``. In start order; the first starts at T0."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    starts = T0 + np.concatenate([[0], np.sort(rng.uniform(0, seconds, n - 1))]) * S
    records = []
    for cid, start in enumerate(starts.astype(np.int64).tolist()):
        roll = rng.random()
        if roll < 0.01:  # failed before it was sent: no start
            records.append(MetricRecord(cid, PROFILING, "w", start, 0, 0, start, -1, -1, -1,
                                        10, 0, [], error=ErrorInfo(None, "Build", "x")))
            continue
        if roll < 0.03:
            records.append(MetricRecord(cid, PROFILING, "w", start - MS, start, 0,
                                        start + 3 * MS, -1, -1, -1, 10, 0, [],
                                        error=ErrorInfo(500, "Server Error", "x")))
            continue
        slow = 4.0 if (start - T0) / S >= creep_after_s else 1.0
        ttft = round(rng.lognormal(np.log(40.0 * slow), 0.5) * MS)
        gaps = [round(g * MS) for g in rng.lognormal(np.log(5.0), 0.4, 7)]
        latency = ttft + sum(gaps)
        records.append(MetricRecord(cid, PROFILING, "w", start - MS, start, 0, start + latency,
                                    ttft, ttft + gaps[0], latency, 10, 8, gaps, ttfo_ns=ttft))
    return records


def arrival_order(records: list[MetricRecord], seed: int = 3) -> list[MetricRecord]:
    """As the records manager sees them: in order of each request's end (a record leaves
    when its request ends), with some jitter from batching over several processors."""
    rng = random.Random(seed)
    return sorted(records, key=lambda r: r.end_ns + rng.randint(0, 50 * MS))


def sketched_result(records: list[MetricRecord], batch: int = 256,
                    **config: Any) -> ProfileResult:
    user = UserConfig(streaming=True, sketch=True, sketch_relative_accuracy=ALPHA, **config)
    aggregator = RunAggregator(user, META, streaming=True)
    for first in range(0, len(records), batch):
        aggregator.add(records[first:first + batch])
    out = aggregator.finish([(0, len(records))])
    return ProfileResult.from_dict(out, user)


def exact_result(records: list[MetricRecord]) -> ProfileResult:
    user = UserConfig(streaming=True)
    out = compute_results(records, user, META, [(0, len(records))], streaming=True)
    return ProfileResult.from_dict(out, user)


@pytest.fixture(scope="module")
def run() -> list[MetricRecord]:
    return soak_records(65.0, 100.0)


@pytest.mark.parametrize("window_s", [10.0, 20, 30.0])
def test_window_percentiles_match_the_exact_windows_on_the_same_records(
        run: list[MetricRecord], window_s: float) -> None:
    sketched = sketched_result(arrival_order(run)).sketch_windows(window_s)
    exact = [w for w in windows(exact_result(run), window_s) if w.n_ok + w.n_err]
    assert sketched is not None and len(sketched) == len(exact) >= 3
    for mine, theirs in zip(sketched, exact, strict=True):
        assert mine.label == theirs.label
        assert (mine.n_ok, mine.n_err) == (theirs.n_ok, theirs.n_err)
        assert mine.duration_s == pytest.approx(theirs.duration_s, abs=1e-9)
        checked = 0
        for tag in WINDOW_METRICS:
            values = theirs.values(tag)
            sk = mine.sketched(tag)
            if not values.size:
                assert sk is None, tag
                continue
            assert sk is not None and sk.sketch.count == values.size, tag
            assert sk.sketch.mean == pytest.approx(float(values.mean()), rel=1e-9)
            for q in (50, 90, 99):
                assert sk.sketch.quantile(q) == pytest.approx(
                    float(np.percentile(values, q)), rel=ALPHA * 1.0001), (tag, q)
            checked += 1
        assert checked >= 5  # latency, TTFT, TTST, TTFO, ITL, per-user throughput, ...
        adj = mine.sketched("adj_time_to_first_token")
        assert adj is not None and adj.failures == theirs.n_err


def test_windows_of_a_length_that_is_not_a_multiple_of_the_base_are_not_offered(
        run: list[MetricRecord]) -> None:
    result = sketched_result(run, slice_duration="5s")
    assert result.sketch_windows(15.0) is not None  # 3 x 5 s
    assert result.sketch_windows(7.5) is None
    assert result.sketch_windows(2.5) is None  # shorter than the base: never rebuilt
    assert sketched_result(run).sketch_windows(15.0) is None  # the default base is 10 s
    assert exact_result(run).sketch_windows(10.0) is None  # exact mode keeps none


def test_a_windowed_objective_in_sketch_mode_is_decided_per_window() -> None:
    records = soak_records(40.0, 100.0, creep_after_s=30.0)
    result = sketched_result(arrival_order(records))
    assert result.timeline.start_ns.size == 0  # sketch mode: no per-request times

    def verdict(key: str, value: str) -> Any:
        [v] = judge_runs([parse_objective(key, value)], [result], None, False, 0.95)
        return v

    calm = verdict("time_to_first_token.p99@10s", "< 2000 ms")
    assert calm.status == "PASS", calm
    # TTFT quadrupled in the last 10 s: that window breaches, the whole run's p99 would not
    # tell it apart from the others.
    creep = verdict("time_to_first_token.p99@10s", "< 300 ms")
    assert creep.status == "FAIL", creep
    assert creep.window == "worst: window 30-40 s" and "worst of 4 windows" in creep.note
    assert verdict("request_latency.p90@20s", "< 2000 ms").status == "PASS"
    # Failed requests count as infinitely slow in each window: 3 % of them, p90 is finite.
    assert verdict("adj_request_latency.p90@10s", "< 2000 ms").status == "PASS"
    # A metric the windows do not keep was measured all the same: undecided, never a FAIL.
    unkept = verdict("output_sequence_length.p50@10s", "< 1000 tokens")
    assert unkept.status == "INCONCLUSIVE" and "keeps time windows of" in unkept.note, unkept


def test_an_early_start_that_arrives_after_the_grid_settled_lands_before_it() -> None:
    records = soak_records(50.0, 100.0)
    # The run's first request, and its slowest: its record comes after everything else.
    start = T0 - S
    late = MetricRecord(len(records), PROFILING, "w", start - MS, start, 0, start + 60 * S,
                        10 * MS, 11 * MS, 60 * S, 10, 8, [MS] * 7, ttfo_ns=10 * MS)
    user = UserConfig(streaming=True, sketch=True, sketch_relative_accuracy=ALPHA)
    aggregator = RunAggregator(user, META, streaming=True)
    for first in range(0, len(records), 256):
        aggregator.add(records[first:first + 256])
    aggregator.add([late])
    result = ProfileResult.from_dict(aggregator.finish([(0, len(records) + 1)]), user)
    found = result.sketch_windows(10.0)
    assert found is not None and result._sketch_windows is not None
    # The grid starts at the earliest start of the records that settled it, 1 s after the
    # run's: the late record has a window of its own, the others keep theirs, whole.
    offset = result._sketch_windows["offset_s"]
    assert offset == pytest.approx(1.0, abs=1e-6)
    assert found[0].label == "window 0-1 s" and (found[0].n_ok, found[0].n_err) == (1, 0)
    assert found[1].label == "window 1-11 s"
    assert sum(w.n_ok + w.n_err for w in found) == len(records) + 1
    exact = [w for w in windows(exact_result(records), 10.0) if w.n_ok + w.n_err]
    assert [(w.n_ok, w.n_err) for w in found[1:]] == [(w.n_ok, w.n_err) for w in exact]


def test_warmup_records_stay_out_of_the_windows() -> None:
    records = soak_records(12.0, 50.0)
    warm = [MetricRecord(10_000 + i, WARMUP, "w", T0 - 5 * S, T0 - 5 * S + i, 0,
                         T0 - 4 * S, 10 * MS, 11 * MS, S, 10, 8, [MS] * 7, ttfo_ns=10 * MS)
            for i in range(20)]
    user = UserConfig(streaming=True, sketch=True)
    aggregator = RunAggregator(user, META, streaming=True)
    aggregator.add(warm + records)
    result = ProfileResult.from_dict(aggregator.finish([(0, len(records)),
                                                        (10_000, 20)]), user)
    found = result.sketch_windows(10.0)
    assert found is not None and len(found) == 2 and found[0].label == "window 0-10 s"
    assert sum(w.n_ok + w.n_err for w in found) == len(records)


def test_old_windows_are_kept_frozen_in_a_few_kilobytes_and_thawed_by_late_records() -> None:
    records = soak_records(120.0, 40.0, seed=11)
    user = UserConfig(streaming=True, sketch=True, sketch_relative_accuracy=ALPHA,
                      slice_duration="1s")
    aggregator = RunAggregator(user, META, streaming=True)
    windows_ = aggregator._windows
    assert windows_ is not None
    late = records.pop(100)  # a request of second 2 whose record comes at the end
    for first in range(0, len(records), 40):  # a second of records a batch, in order
        aggregator.add(records[first:first + 40])
        assert len(windows_._live) <= _SketchWindows.LIVE_WINDOWS
        assert aggregator.buffer_bytes() <= 64 + 1024 + first // 8  # no timeline kept
    held = aggregator.window_bytes()
    # 7 metrics a window, under 2 KB a sketch in its bytes (latencies within two decades).
    assert 0 < held <= 120 * 7 * 2048, held
    index = (late.start_ns - T0) // S
    assert index in windows_._frozen
    aggregator.add([late])  # thawed and joined
    shipped = aggregator.finish([(0, len(records) + 1)])["sketch_windows"]
    assert shipped["base_s"] == 1.0 and shipped["offset_s"] == 0.0
    assert len(shipped["windows"]) == 120
    [window] = [w for w in shipped["windows"] if w["index"] == index]
    same_second = [r for r in [*records, late] if (r.start_ns or r.credit_ns) // S
                   == late.start_ns // S]
    assert window["n_ok"] + window["n_err"] == len(same_second)
    ok = [r for r in same_second if r.error is None]
    ttft = MetricSketch.from_bytes(window["sketches"]["time_to_first_token"])
    assert ttft.count == len(ok)
    assert ttft.mean == pytest.approx(np.mean([r.ttft_ns / MS for r in ok]), rel=1e-9)


def test_the_windows_go_through_the_values_file_to_the_host(tmp_path: Path,
                                                            run: list[MetricRecord]) -> None:
    user = UserConfig(streaming=True, sketch=True, sketch_relative_accuracy=ALPHA)
    aggregator = RunAggregator(user, META, streaming=True)
    aggregator.add(arrival_order(run))
    results = aggregator.finish([(0, len(run))])
    direct = ProfileResult.from_dict(dict(results), user).sketch_windows(20.0)
    direct_bins = results["end_bins"]
    # What the records manager does: values, timeline and sketches into the values file.
    stored = {"values": results.pop("values"), "timeline": results.pop("timeline"),
              "worker_load": {}, "sketches": results.pop("sketches"),
              "sketch_windows": results.pop("sketch_windows"),
              "end_bins": results.pop("end_bins")}
    path = tmp_path / "records-r.values"
    with open(path, "wb") as out:
        write_msgpack(out, stored)
    result = ProfileResult.from_dict({**results, "values_path": str(path)}, user)
    found = result.sketch_windows(20.0)
    assert found is not None and direct is not None and len(found) == len(direct) == 4
    for a, b in zip(found, direct, strict=True):
        assert (a.label, a.n_ok, a.n_err, a.duration_s) == (b.label, b.n_ok, b.n_err,
                                                            b.duration_s)
        assert a.sketches == b.sketches
    assert result._end_bins == direct_bins and sum(direct_bins["requests"]) > 0
    assert result.sketch_windows(20.0) is not found  # a fresh list, the same windows


def test_the_completions_timeline_stays_bounded_by_coarsening_its_bins() -> None:
    """Bins double (pairs merged) once the run outgrows MAX_BINS: the counts are kept,
    the width grows, the bins never pass MAX_BINS; ends before the origin go to bin 0."""
    from aiperf.metrics.aggregate import _EndBins

    bins = _EndBins()
    bins.MAX_BINS = 64
    rng = np.random.default_rng(5)
    total = np.zeros(3)
    for second in range(100):  # 100 s of ends, 10 ms bins to start with
        ends = (second + rng.random(50)) * 1e9
        starts = ends - 5e6
        osl, isl = rng.integers(1, 20, 50), rng.integers(5, 9, 50)
        bins.add(starts.astype(np.int64), ends.astype(np.int64), np.ones(50, bool), osl,
                 isl)
        total += [50, osl.sum(), isl.sum()]
        assert bins.counts.shape[1] <= bins.MAX_BINS
    bins.add(np.array([-2 * 10**9], np.int64), np.array([-10**9], np.int64),
             np.ones(1, bool), np.ones(1), np.ones(1))
    total += 1
    shipped = bins.finish(first_start=-5 * 10**6)
    assert shipped["width_s"] == pytest.approx(0.01 * 2**8)  # 100 s / 64 bins: 2.56 s
    assert shipped["offset_s"] == pytest.approx(
        (bins.origin + 5 * 10**6) / 1e9)  # the first batch's earliest start, from the run's
    assert [sum(shipped[row]) for row in _EndBins.ROWS[:3]] == total.tolist()
    assert sum(shipped["starts"]) == shipped["n_starts"] == 5001
    assert shipped["first_start_ns"] == -2 * 10**9  # exact, though binned into bin 0
    assert sum(shipped["busy_ns"]) == pytest.approx(5000 * 5e6, abs=5000)
    assert len(shipped["requests"]) <= 64
