"""Sketch mode in the plugin: how it is asked for (``--aiperf-sketch``, ini ``aiperf_sketch``,
the marker key ``sketch=True``, validated at collection) and how a sketched result is judged
(percentiles from the sketch, a threshold within its relative error INCONCLUSIVE)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from aiperf.metrics.stats import summarize
from aiperf.results import ProfileResult
from aiperf.statistics import quantile_interval
from aiperf.statistics.sketch import MetricSketch, sketch_summary, sketch_summary_adjusted
from pytest_aiperf.judge import judge_result, judge_runs
from pytest_aiperf.slo import parse_objective

SHOW_SKETCH = """
    import pytest

    @pytest.mark.aiperf(request_count=4)
    def test_default(aiperf_result):
        print("SKETCH default", aiperf_result.config.sketch,
              aiperf_result.config.resolved_export_records())

    @pytest.mark.aiperf(request_count=4, sketch=False)
    def test_opted_out(aiperf_result):
        print("SKETCH opted_out", aiperf_result.config.sketch)

    @pytest.mark.aiperf(request_count=4, sketch=True, export_records=True,
                        sketch_relative_accuracy=0.02)
    def test_marker(aiperf_result):
        print("SKETCH marker", aiperf_result.config.sketch,
              aiperf_result.config.resolved_export_records(),
              aiperf_result.config.sketch_relative_accuracy)
"""


def test_the_flag_turns_sketch_mode_on_and_a_marker_turns_it_off(
        project: pytest.Pytester) -> None:
    project.makepyfile(SHOW_SKETCH)
    result = project.runpytest_inprocess("-s", "--aiperf-sketch")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*SKETCH default True False", "*SKETCH opted_out False",
                                 "*SKETCH marker True True 0.02"])


def test_the_ini_key_turns_sketch_mode_on(project: pytest.Pytester) -> None:
    project.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_workers = 1
        aiperf_validity = warn
        aiperf_sketch = true
    """)
    project.makepyfile(SHOW_SKETCH)
    result = project.runpytest_inprocess("-s", "-k", "default")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*SKETCH default True False"])


def test_without_the_option_no_test_is_sketched(project: pytest.Pytester) -> None:
    project.makepyfile(SHOW_SKETCH)
    result = project.runpytest_inprocess("-s", "-k", "default")
    result.assert_outcomes(passed=1, deselected=2)
    result.stdout.fnmatch_lines(["*SKETCH default False True"])


@pytest.mark.parametrize(("key", "value"), [("sketch", "'sometimes'"),
                                            ("sketch_relative_accuracy", "0.0"),
                                            ("sketch_relative_accuracy", "0.7")])
def test_a_bad_sketch_key_is_a_collection_error_naming_it(project: pytest.Pytester, key: str,
                                                          value: str) -> None:
    project.makepyfile(f"""
        import pytest

        @pytest.mark.aiperf(request_count=4, {key}={value})
        def test_bad():
            pass
    """)
    result = project.runpytest_inprocess()
    assert result.ret != 0
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"*{key}*"])


# -- judging a sketched result -----------------------------------------------------------

def sketched_result(tmp_path: Path, values: np.ndarray, failures: int = 0,
                    accuracy: float = 0.01) -> ProfileResult:
    """A result as the host reads it in sketch mode: the statistics of ttft from its sketch,
    the sketch in the values file's "sketches", no per-request values."""
    sketch = MetricSketch(accuracy)
    for start in range(0, values.size, 256):  # as the records manager adds batches
        sketch.add(values[start:start + 256])
    stored = {"values": {}, "timeline": None, "sketches": {"time_to_first_token":
                                                          sketch.to_bytes()}}
    path = tmp_path / "values.msgpack"
    path.write_bytes(msgspec.msgpack.encode(stored))
    metrics = {
        "time_to_first_token": sketch_summary(sketch, "ms"),
        "adj_time_to_first_token": sketch_summary_adjusted(sketch, failures, "ms"),
        "request_count": {"unit": "requests", "avg": float(values.size)},
        "error_request_count": {"unit": "requests", "avg": float(failures)},
        "benchmark_duration": {"unit": "sec", "avg": 10.0},
    }
    return ProfileResult.from_dict({"run_id": "sketched", "metrics": metrics,
                                    "values_path": str(path)})


def ttft(seed: int, n: int) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(3.0, 0.6, n)


def test_a_sketched_metric_reads_like_an_exact_one(tmp_path: Path) -> None:
    values = ttft(1, 20_000)
    result = sketched_result(tmp_path, values)
    metric = result["time_to_first_token"]
    assert len(metric.values) == 0 and metric.sketch is not None
    assert metric.relative_accuracy == 0.01
    exact = summarize(values, "ms")
    assert metric.p99 == pytest.approx(exact["p99"], rel=0.01)
    assert metric.avg == pytest.approx(exact["avg"], rel=1e-12)
    # A percentile the summary does not hold comes from the sketch too.
    assert metric.p999 == pytest.approx(np.percentile(values, 99.9), rel=0.01)
    assert result.metric("time_to_first_token.p37") == pytest.approx(
        np.percentile(values, 37), rel=0.01)
    assert not Path(tmp_path / "values.msgpack").exists()  # read once, then removed


def test_a_threshold_within_the_sketchs_error_is_inconclusive(tmp_path: Path) -> None:
    values = ttft(2, 20_000)
    result = sketched_result(tmp_path, values)
    exact_high = quantile_interval(values, 99).high
    assert exact_high is not None
    # Just above the exact values' upper bound: exact values would PASS this, but the
    # sketch cannot tell it from 1 % rounding, so it does not decide.
    near = parse_objective("time_to_first_token.p99", f"< {exact_high * 1.001} ms")
    far = parse_objective("time_to_first_token.p99", f"< {exact_high * 1.05} ms")
    below = parse_objective("time_to_first_token.p99", f"< {exact_high * 0.8} ms")
    mean = parse_objective("time_to_first_token.avg", f"< {values.mean() * 1.05} ms")
    verdicts = judge_result([near, far, below, mean], result)
    assert [v.status for v in verdicts] == ["INCONCLUSIVE", "PASS", "FAIL", "PASS"]
    assert "relative accuracy 1 %" in verdicts[0].method
    assert "exact moments" in verdicts[3].method
    assert verdicts[0].count == values.size
    assert verdicts[0].needed is None or verdicts[0].needed > values.size


def test_error_adjusted_objectives_count_failures_in_sketch_mode(tmp_path: Path) -> None:
    values = ttft(3, 5_000)
    result = sketched_result(tmp_path, values, failures=100)  # 2 %: p99 is a failure
    verdicts = judge_result([
        parse_objective("adj_time_to_first_token.p99", "< 10 s"),
        parse_objective("adj_time_to_first_token.p50", f"< {np.median(values) * 1.2} ms"),
    ], result)
    assert [v.status for v in verdicts] == ["FAIL", "PASS"]
    assert verdicts[0].count == 5_100
    assert result["adj_time_to_first_token"].p99 == float("inf")


def test_pooled_runs_merge_their_sketches_and_windows_are_not_guessed(tmp_path: Path) -> None:
    first, second = ttft(4, 3_000), ttft(5, 3_000)
    runs = []
    for name, values in (("a", first), ("b", second)):
        (tmp_path / name).mkdir()
        runs.append(sketched_result(tmp_path / name, values))
    both = np.concatenate([first, second])
    high = quantile_interval(both, 90).high
    assert high is not None
    objectives = [parse_objective("time_to_first_token.p90", f"< {high * 1.05} ms"),
                  parse_objective("time_to_first_token.p90@1s", "< 10 s")]
    # steady=True asks for the steady window, which sketch mode cannot cut: whole runs.
    pooled, windowed = judge_runs(objectives, runs, None, steady=True, confidence=0.95)
    assert pooled.status == "PASS" and pooled.count == 6_000
    assert "sketch mode" in pooled.window
    assert windowed.status == "INCONCLUSIVE"
    assert windowed.note is not None and "sketch mode" in windowed.note


def test_a_sketched_load_test_runs_and_is_judged_from_its_sketches(
        project: pytest.Pytester) -> None:
    """The whole path: the marker key, the records manager's sketches, the host's result,
    the judge's sketch intervals and the report's method text."""
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=60, concurrency=4, sketch=True,
                            slo={"request_latency.p90": "< 60 s",
                                 "request_latency.avg": "< 60 s"})
        def test_sketched(aiperf_result):
            latency = aiperf_result["request_latency"]
            assert latency.sketch is not None and len(latency.values) == 0
            assert latency.relative_accuracy == 0.01 and latency.count == 60
            assert latency.sketch.count == 60
            assert latency.min <= latency.p50 <= latency.p99 <= latency.max
            print("P99", latency.p99, "P999", latency.p999)
    """)
    result = project.runpytest_inprocess("-s", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*P99 * P999 *"])
    report = project.runpytest_inprocess("-v", "--aiperf-artifacts", "out")
    report.assert_outcomes(passed=1)
    summary = (project.path / "out" / "summary.json").read_text()
    assert "read from a DDSketch and widened by its relative accuracy 1 %" in summary
    assert "from the sketch's exact moments" in summary


def test_windows_kept_as_sketches_are_judged_window_by_window(tmp_path: Path) -> None:
    """A result that offers per-window sketches (``sketch_windows``) gets windowed verdicts:
    every window must meet the objective, at Bonferroni's per-window confidence."""
    from pytest_aiperf.judge import SketchEvidence

    result = sketched_result(tmp_path, ttft(6, 4_000))
    rng = np.random.default_rng(7)

    def window(i: int, scale: float) -> SketchEvidence:
        sketch = MetricSketch()
        sketch.add(rng.lognormal(3.0, 0.6, 1_000) * scale)
        return SketchEvidence(f"{i * 10}-{i * 10 + 10} s", 1_000, 0, 10.0,
                              {"time_to_first_token": sketch})

    calm = [window(i, 1.0) for i in range(3)]
    result.sketch_windows = lambda seconds: calm if seconds == 10 else None  # type: ignore[attr-defined]
    passes = parse_objective("time_to_first_token.p90@10s", "< 80 ms")  # true p90: 43 ms
    other_length = parse_objective("time_to_first_token.p90@5s", "< 80 ms")
    verdicts = judge_runs([passes, other_length], [result], None, steady=False,
                          confidence=0.95)
    assert [v.status for v in verdicts] == ["PASS", "INCONCLUSIVE"]
    assert verdicts[0].confidence == pytest.approx(1 - 0.05 / 3)
    assert "relative accuracy" in verdicts[0].method
    slow = [*calm, window(3, 3.0)]  # one window three times slower: p90 ~ 130 ms
    result.sketch_windows = lambda seconds: slow  # type: ignore[attr-defined]
    (breached,) = judge_runs([passes], [result], None, steady=False, confidence=0.95)
    assert breached.status == "FAIL" and breached.window == "worst: 30-40 s"
