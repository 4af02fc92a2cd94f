"""The numbers each plot is drawn from: CDF points, buckets, requests in flight, samples,
thresholds, windows, ladders, server metric series; and reading the sources."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.baselines.sources import RequestRows, SourceError, load_requests
from aiperf.report.data import (
    ReportError,
    bucket_width,
    cdf_points,
    in_flight,
    ladders,
    load_report,
    server_series,
    thresholds,
    time_buckets,
    timeline_sample,
    window_span,
)
from aiperf.results import ProfileResult
from tests.harness.synthetic_runs import synthetic_result
from tests.unit.report.conftest import session_root, verdict

AIPERF013 = Path(__file__).parents[2] / "data" / "aiperf013"


def _rows(starts: list[float], ends: list[float], errors: list[str | None],
          latency: list[float] | None = None) -> RequestRows:
    n = len(starts)
    values = {"request_latency": np.asarray(latency if latency is not None else
                                            [np.nan] * n, dtype=np.float64)}
    return RequestRows(ids=[str(i) for i in range(n)], start_s=np.asarray(starts, float),
                       end_s=np.asarray(ends, float),
                       errors=[None if e is None else (e, "why") for e in errors],
                       values=values)


# -- CDF


def test_a_small_cdf_is_every_value_with_its_rank_fraction() -> None:
    x, p = cdf_points(np.array([3.0, 1.0, 2.0, np.nan, 4.0]))
    assert x.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert p.tolist() == [0.25, 0.5, 0.75, 1.0]


def test_a_thinned_cdf_keeps_both_ends_and_the_exact_tail() -> None:
    values = np.random.default_rng(5).lognormal(3, 1, 100_000)
    x, p = cdf_points(values, max_points=400)
    ordered = np.sort(values)
    assert len(x) <= 402
    assert x[0] == ordered[0] and x[-1] == ordered[-1] and p[-1] == 1.0
    # every point is a true point of the full CDF
    ranks = np.round(p * len(values)).astype(int) - 1
    assert np.array_equal(x, ordered[ranks])
    # the p99 to p99.99 tail is drawn with many points, not a few
    assert ((p >= 0.99) & (p < 0.9999)).sum() >= 50


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=3000),
       st.integers(10, 500))
def test_cdf_points_are_monotone_and_within_the_data(values: list[float], limit: int) -> None:
    x, p = cdf_points(np.array(values), max_points=limit)
    assert len(x) == len(p) <= max(limit + 2, len(values) if len(values) <= limit else 0)
    assert np.all(np.diff(x) >= 0) and np.all(np.diff(p) > 0)
    assert x[0] == min(values) and x[-1] == max(values) and p[-1] == 1.0


def test_an_empty_cdf() -> None:
    x, p = cdf_points(np.array([np.nan]))
    assert len(x) == 0 and len(p) == 0


# -- time buckets


@pytest.mark.parametrize(("duration", "width"), [(60.0, 1.0), (1.9, 0.05), (600.0, 10.0),
                                                 (0.0, 1.0), (7.0, 0.2)])
def test_bucket_widths_are_round(duration: float, width: float) -> None:
    assert bucket_width(duration) == pytest.approx(width)


def test_in_flight_is_the_time_weighted_count() -> None:
    # [0, 2] and [1, 3] over buckets of 1 s: 1, 2, 1 requests in flight
    result = in_flight(np.array([0.0, 1.0]), np.array([2.0, 3.0]), np.array([0.0, 1, 2, 3]))
    assert result.tolist() == [1.0, 2.0, 1.0]
    # half a bucket open is half a request in flight
    assert in_flight(np.array([0.5]), np.array([1.0]), np.array([0.0, 1.0])).tolist() == [0.5]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5)), min_size=1, max_size=60),
       st.integers(1, 30))
def test_in_flight_matches_summing_each_overlap(spans: list[tuple[float, float]],
                                                 buckets: int) -> None:
    start = np.array([s for s, _ in spans])
    end = start + np.array([d for _, d in spans])
    edges = np.linspace(0, 15, buckets + 1)
    overlap = np.clip(np.minimum(end[:, None], edges[None, 1:])
                      - np.maximum(start[:, None], edges[None, :-1]), 0, None)
    expected = overlap.sum(axis=0) / np.diff(edges)
    assert np.allclose(in_flight(start, end, edges), expected, atol=1e-9)


def test_buckets_count_completions_and_errors_by_kind() -> None:
    rows = _rows(starts=[0.0, 0.1, 0.2, 1.1, 1.2, 1.5],
                 ends=[0.5, 0.6, np.nan, 1.4, 1.3, 1.9],
                 errors=[None, None, "500 Server Error", None, "429 Too Many", "500 Server "
                         "Error"])
    buckets = time_buckets(rows, width=1.0)
    assert buckets.edges.tolist() == [0.0, 1.0, 2.0]
    assert buckets.throughput.tolist() == [2.0, 1.0]  # successful completions by end time
    assert {k: v.tolist() for k, v in buckets.errors.items()} == {
        "429 Too Many": [0, 1], "500 Server Error": [1, 1]}
    # in flight: 0.5+0.5 (two successes) + 0 (failed at its start) in the first second
    assert buckets.in_flight[0] == pytest.approx(1.0)
    assert buckets.mids.tolist() == [0.5, 1.5]


def test_buckets_of_a_real_run_add_up(artifact_dir: Path, run_200: ProfileResult) -> None:
    rows = load_requests(artifact_dir, ["request_latency"])
    buckets = time_buckets(rows)
    width = float(np.diff(buckets.edges)[0])
    assert round(buckets.throughput.sum() * width) == run_200.request_count
    assert sum(int(v.sum()) for v in buckets.errors.values()) == run_200.error_count
    assert len(buckets.edges) - 1 >= 8
    # the area under requests in flight is the sum of every request's duration
    finish = np.where(np.isfinite(rows.end_s), rows.end_s, rows.start_s)
    assert (buckets.in_flight * width).sum() == pytest.approx((finish - rows.start_s).sum())


# -- the timeline's sample


def test_a_small_run_is_drawn_whole_in_time_order() -> None:
    rows = _rows([2.0, 0.0, 1.0], [3.0, 1.0, 2.0], [None, None, None])
    assert timeline_sample(rows).tolist() == [1, 2, 0]


def test_a_big_run_keeps_its_errors_and_its_slowest_requests() -> None:
    n = 20_000
    rng = np.random.default_rng(2)
    starts = np.sort(rng.uniform(0, 100, n))
    latency = rng.lognormal(3, 0.3, n)
    errors: list[str | None] = [None] * n
    for i in (17, 5000, 19999):
        errors[i] = "500 Server Error"
    latency[[17, 5000, 19999]] = np.nan
    rows = _rows(list(starts), list(starts + 0.1), errors, list(latency))
    chosen = timeline_sample(rows, limit=2000)
    assert len(chosen) <= 2000 and np.all(np.diff(rows.start_s[chosen]) >= 0)
    assert {17, 5000, 19999} <= set(chosen.tolist())
    slowest = np.argsort(np.nan_to_num(latency, nan=-1))[-200:]
    assert set(slowest.tolist()) <= set(chosen.tolist())


# -- objectives as a plot draws them


def test_thresholds_of_a_metric_with_intervals_levels_and_windows() -> None:
    verdicts = [
        verdict("time_to_first_token.p95", "< 250 ms", 12.5, [12.2, 13.3]),
        verdict("adj_time_to_first_token.p99", "<= 300 ms", 20.0, None, "INCONCLUSIVE"),
        verdict("time_to_first_token.p99@10s", "< 40 ms", 30.0, [29.0, 31.0], "FAIL",
                window="window 10-20 s"),
        verdict("time_to_first_token.avg", "< baseline + 10 %", 12.0, [11.0, 13.0]),
        verdict("request_latency.p50", "< 1 s", 900.0, [850.0, 950.0]),
    ]
    found = thresholds(verdicts, "time_to_first_token")
    assert [(t.key, t.value, t.interval, t.level, t.verdict, t.span) for t in found] == [
        ("time_to_first_token.p95", 250.0, (12.2, 13.3), 0.95, "PASS", None),
        ("adj_time_to_first_token.p99", 300.0, None, 0.99, "INCONCLUSIVE", None),
        ("time_to_first_token.p99@10s", 40.0, (29.0, 31.0), 0.99, "FAIL", (10.0, 20.0)),
    ]
    # summary.json's "inf" bound (an error-adjusted percentile) is no interval to shade
    assert thresholds([verdict("adj_request_latency.p99", "< 2 s", math.inf,
                               [1.0, "inf"])], "request_latency")[0].interval is None


@pytest.mark.parametrize(("window", "span"), [
    ("whole run", None), ("window 10-20 s", (10.0, 20.0)),
    ("steady state 1.25-9.5 s (MSER-5 dropped the first 12)", (1.25, 9.5))])
def test_window_spans(window: str, span: tuple[float, float] | None) -> None:
    assert window_span(window) == span


# -- sources


def test_a_session_root_gives_a_section_per_test_with_its_verdicts(tmp_path: Path) -> None:
    result = synthetic_result(60, seed=2)
    checks = [verdict("time_to_first_token.p90", "< 100 ms", 50.0, [45.0, 55.0])]
    session_root(tmp_path, {"t.py::test_a": (result, checks, "PASS"),
                           "t.py::test_b": (result, [], "FAIL")})
    sections = load_report([tmp_path])
    assert [(s.key, s.anchor) for s in sections] == [("t.py::test_a", "test-1"),
                                                      ("t.py::test_b", "test-2")]
    run = sections[0].runs[0]
    assert run.outcome == "PASS" and run.verdicts == checks
    assert run.rows is not None and len(run.rows) == 60
    assert run.stat("request_latency", "p99") == pytest.approx(
        result.metric("request_latency.p99"))


def test_a_moved_session_root_still_finds_its_test_dirs(tmp_path: Path) -> None:
    session_root(tmp_path / "a", {"t.py::test_a": (synthetic_result(30), [], "PASS")})
    (tmp_path / "a").rename(tmp_path / "b")
    run = load_report([tmp_path / "b"])[0].runs[0]
    assert run.rows is not None and len(run.rows) == 30


def test_two_roots_overlay_the_same_test(tmp_path: Path) -> None:
    for name, seed in (("main", 1), ("pr", 2)):
        session_root(tmp_path / name, {"t.py::test_a": (synthetic_result(30, seed=seed), [],
                                                       "PASS")})
    sections = load_report([tmp_path / "main", tmp_path / "pr"])
    assert len(sections) == 1
    assert [r.label for r in sections[0].runs] == [str(tmp_path / "main"), str(tmp_path / "pr")]


def test_nvidia_aiperf_artifacts_read_with_ids_and_errors() -> None:
    sections = load_report([AIPERF013])
    run = sections[0].runs[0]
    assert run.kind == "nvidia-aiperf" and run.profile == "NVIDIA AIPerf artifacts 0.13.0"
    assert run.rows is not None and len(run.rows) == 32
    assert int((~run.rows.ok).sum()) == 2
    failed = [e for e in run.rows.errors if e is not None]
    assert failed[0][0] == "500 Internal Server Error" and "injected" in failed[0][1]
    text = (AIPERF013 / "profile_export.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert run.rows.ids == [line["metadata"]["x_request_id"] for line in lines]
    assert run.metrics["request_error_rate"] == pytest.approx(100 * 2 / 32)


def test_plain_directories_given_together_are_one_compared_section(
        tmp_path: Path, artifact_dir: Path) -> None:
    sections = load_report([artifact_dir, AIPERF013])
    assert len(sections) == 1 and len(sections[0].runs) == 2
    assert sections[0].title == "2 runs compared"


@pytest.mark.parametrize("make", ["missing", "empty dir", "bad summary"])
def test_a_bad_source_names_itself(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "empty dir":
        path.mkdir()
    elif make == "bad summary":
        path.mkdir()
        (path / "summary.json").write_text("{not json")
    with pytest.raises(ReportError, match=str(path)):
        load_report([path])


def test_ladder_points_are_the_cases_of_one_function(tmp_path: Path) -> None:
    tests = {f"t.py::test_ladder[{c}]": (synthetic_result(40, slots=c, seed=c), [], "PASS")
             for c in (1, 4)}
    tests["t.py::test_single"] = (synthetic_result(20), [], "PASS")
    session_root(tmp_path, tests)
    found = ladders(load_report([tmp_path]))
    assert list(found) == ["t.py::test_ladder"]
    points = found["t.py::test_ladder"]
    assert [p.case for p in points] == ["[1]", "[4]"]
    summary = json.loads((tmp_path / "t.py_test_ladder_4" / "profile_export_aiperf.json")
                         .read_text())
    assert points[1].throughput == pytest.approx(summary["request_throughput"]["avg"])
    assert points[1].p99 == pytest.approx(summary["request_latency"]["p99"])


def test_server_metric_series_from_aiperfs_shape(tmp_path: Path) -> None:
    slices = [{"start_ns": 1_000_000_000 + i * 500_000_000,
               "end_ns": 1_500_000_000 + i * 500_000_000, "avg": float(i), "min": 0.0,
               "max": 9.0} for i in range(4)]
    document = {"schema_version": "1.1", "summary": {}, "metrics": {
        "vllm:num_requests_running": {"type": "gauge", "description": "d", "unit": None,
                                      "series": [{"labels": {"model": "m"},
                                                  "timeslices": slices}]},
        "vllm:prompt_tokens_total": {"type": "counter", "description": "d", "unit": "tokens",
                                     "series": [{"timeslices": [
                                         {**s, "total": 10.0, "rate": 20.0} for s in slices]}]},
        "no_slices": {"type": "gauge", "description": "d", "series": [{"stats": {}}]}}}
    path = tmp_path / "server_metrics_export.json"
    path.write_text(json.dumps(document))
    series = server_series(path)
    assert [(m["name"], m["unit"], m["kind"]) for m in series] == [
        ("vllm:num_requests_running", "", "gauge"),
        ("vllm:prompt_tokens_total", "tokens/s", "counter")]
    assert series[0]["series"] == [("model=m", [[0.0, 0.0], [0.5, 1.0], [1.0, 2.0],
                                                [1.5, 3.0]])]
    assert [v for _, v in series[1]["series"][0][1]] == [20.0] * 4
    path.write_text("[]")
    with pytest.raises(ReportError, match="metrics"):
        server_series(path)


def test_server_metric_samples_as_this_project_scrapes_them(tmp_path: Path) -> None:
    times = [5_000_000_000 + i * 100_000_000 for i in range(5)]
    document = {"metrics": {
        "ref:queue_depth": {"type": "gauge", "series": [{"stats": {}, "samples": {
            "timestamps_ns": times, "values": [50.0, 3.0, 8.0, 1.0, 6.0]}}]},
        # a counter reset between the 3rd and 4th scrape: that gap gives no rate
        "ref:requests_total": {"type": "counter", "unit": "requests", "series": [{
            "samples": {"timestamps_ns": times, "values": [11.0, 18.0, 25.0, 2.0, 9.0]}}]},
        "ref:latency_seconds": {"type": "histogram", "series": [{"stats": {"count": 3}}]}}}
    path = tmp_path / "server_metrics_export.json"
    path.write_text(json.dumps(document))
    # the run's first request was 0.2 s before the first scrape (on the wall clock)
    series = server_series(path, origin_ns=4_800_000_000)
    assert [m["name"] for m in series] == ["ref:queue_depth", "ref:requests_total"]
    assert series[0]["series"][0][1] == [[0.2, 50.0], [0.3, 3.0], [0.4, 8.0], [0.5, 1.0],
                                         [0.6, 6.0]]
    rates = series[1]["series"][0][1]
    assert [t for t, _ in rates] == [0.3, 0.4, 0.6]
    assert [r for _, r in rates] == pytest.approx([70.0, 70.0, 70.0])
    assert series[1]["unit"] == "requests/s"


def test_request_rows_know_the_wall_clock_of_their_origin(artifact_dir: Path) -> None:
    text = (artifact_dir / "profile_export.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    rows = load_requests(artifact_dir, ["request_latency"])
    meta = lines[0]["metadata"]
    assert rows.origin_ns is not None and rows.wall_origin_ns is not None
    assert rows.wall_origin_ns - rows.origin_ns == meta["timestamp_ns"] - meta[
        "request_start_ns"]
    # NVIDIA AIPerf's starts are on the wall clock already
    aiperf = load_requests(AIPERF013, ["request_latency"])
    assert aiperf.wall_origin_ns == aiperf.origin_ns


def test_a_line_that_is_no_record_is_named_with_its_number(tmp_path: Path,
                                                           artifact_dir: Path) -> None:
    lines = (artifact_dir / "profile_export.jsonl").read_text().splitlines()
    lines.insert(5, "")  # blank lines are skipped
    lines.insert(9, '{"metadata": "not a record"}')
    (artifact_dir / "profile_export.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"profile_export.jsonl:10: not a "
                                                     r"per-request record"):
        load_requests(artifact_dir, ["request_latency"])
    del lines[9]
    (artifact_dir / "profile_export.jsonl").write_text("\n".join(lines) + "\n")
    assert len(load_requests(artifact_dir, ["request_latency"])) == 200


def test_values_in_another_unit_are_converted_and_unknown_units_left_out(
        tmp_path: Path) -> None:
    def line(value: float, unit: str, start: int) -> str:
        return json.dumps({"metadata": {"request_start_ns": start, "request_end_ns": start + 5,
                                        "credit_id": start},
                           "metrics": {"request_latency": {"value": value, "unit": unit},
                                       "time_to_first_token": {"value": "n/a", "unit": "ms"}}})
    (tmp_path / "profile_export.jsonl").write_text("\n".join([
        line(0.25, "sec", 1), line(250.0, "ms", 2), line(7.0, "furlongs", 3)]) + "\n")
    rows = load_requests(tmp_path, ["request_latency", "time_to_first_token"])
    assert rows.values["request_latency"][:2].tolist() == [250.0, 250.0]
    assert np.isnan(rows.values["request_latency"][2])
    assert np.isnan(rows.values["time_to_first_token"]).all()
    assert rows.ids == ["1", "2", "3"]


@pytest.mark.parametrize(("duration", "target", "width"), [(1.9, 8, 0.2), (0.17, 8, 0.02),
                                                           (10.0, 8, 1.0)])
def test_bucket_widths_rounded_down_give_at_least_the_target(duration: float, target: int,
                                                             width: float) -> None:
    found = bucket_width(duration, target, down=True)
    assert found == pytest.approx(width) and duration / found >= target - 1e-9


def test_one_test_dir_of_a_session_keeps_its_verdicts(tmp_path: Path) -> None:
    checks = [verdict("request_latency.p50", "< 1 s", 100.0, [90.0, 110.0])]
    session_root(tmp_path, {"t.py::test_a": (synthetic_result(20, seed=1), [], "PASS"),
                            "t.py::test_b": (synthetic_result(20, seed=2), checks, "FAIL")})
    (section,) = load_report([tmp_path / "t.py_test_b"])
    assert section.key == "t.py::test_b" and section.runs[0].verdicts == checks
    assert section.runs[0].outcome == "FAIL" and len(section.runs[0].rows or []) == 20
