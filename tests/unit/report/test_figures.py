"""The chart specs of a test's section, from known runs: what each chart is given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiperf.baselines.storage import Storage
from aiperf.exporters.base import export_files
from aiperf.report.data import cdf_points, load_report
from aiperf.report.figures import cdf_chart, fit_x, ladder_chart, section_charts
from aiperf.results import ProfileResult
from tests.harness.synthetic_runs import synthetic_result
from tests.unit.report.conftest import session_root, verdict


def _charts(tmp_path: Path, result: ProfileResult, verdicts: list[dict]) -> dict[str, dict]:
    session_root(tmp_path, {"t.py::test_a": (result, verdicts, "PASS")})
    section = load_report([tmp_path])[0]
    return {c["id"].removeprefix("test-1-"): c for c in section_charts(section)}


def test_a_streaming_test_has_three_cdfs_a_timeline_load_and_errors(
        tmp_path: Path, run_200: ProfileResult) -> None:
    charts = _charts(tmp_path, run_200, [])
    assert list(charts) == ["cdf-time_to_first_token", "cdf-inter_token_latency",
                            "cdf-request_latency", "timeline", "load", "errors"]
    assert [c["kind"] for c in charts.values()] == ["cdf", "cdf", "cdf", "latency",
                                                    "throughput", "errors"]
    json.dumps(list(charts.values()), allow_nan=False)  # a spec is plain, finite JSON


def test_a_cdf_is_the_runs_values_with_each_objectives_line_band_and_level(
        tmp_path: Path, run_200: ProfileResult) -> None:
    ttft = np.sort(np.array([json.loads(line)["metrics"]["time_to_first_token"]["value"]
                             for line in _jsonl(tmp_path, run_200)
                             if "time_to_first_token" in json.loads(line)["metrics"]]))
    p95 = float(np.quantile(ttft, 0.95))
    checks = [verdict("time_to_first_token.p95", "< 120 ms", p95, [p95 - 5, p95 + 5]),
              verdict("time_to_first_token.p50@1s", "< 60 ms", 40.0, [38.0, 42.0], "FAIL",
                      window="window 1-2 s"),
              verdict("request_latency.p99", "< 5000 ms", 200.0, [190.0, 210.0])]
    charts = _charts(tmp_path / "root", run_200, checks)
    cdf = charts["cdf-time_to_first_token"]
    series, window = cdf["series"]
    x, p = cdf_points(ttft)
    # the window's own CDF: the requests that started in 1-2 s
    assert window["name"] == "this run · window 1-2 s" and window["dotted"] is True
    started = [json.loads(line) for line in _jsonl(tmp_path / "w", run_200)]
    in_window = np.sort([r["metrics"]["time_to_first_token"]["value"] for r in started
                         if "time_to_first_token" in r["metrics"]
                         and 1.0 <= r["metadata"]["request_start_ns"] / 1e9 < 2.0])
    assert [pt[0] for pt in window["data"]] == pytest.approx(
        cdf_points(in_window)[0].tolist(), abs=1e-4)
    assert [pt[0] for pt in series["data"]] == pytest.approx(x.tolist(), abs=1e-4)
    assert [pt[1] for pt in series["data"]] == pytest.approx(p.tolist(), abs=1e-5)
    assert [(v["x"], v["verdict"]) for v in cdf["vlines"]] == [(120.0, "PASS"), (60.0, "FAIL")]
    assert cdf["vlines"][1]["label"] == "time_to_first_token.p50@1s < 60 ms (window 1-2 s)"
    assert [(b["x0"], b["x1"]) for b in cdf["bands"]] == [(p95 - 5, p95 + 5), (38.0, 42.0)]
    assert [h["y"] for h in cdf["hlines"]] == [0.95, 0.5]
    assert cdf["x"]["min"] <= x[0] and cdf["x"]["max"] >= 120.0
    # 5 s is far past the data: drawn as text, not a line squashing the curve
    latency = charts["cdf-request_latency"]
    assert latency["vlines"] == []
    assert latency["offscale"][0]["label"] == "request_latency.p99 < 5000 ms: off scale, right"
    # the window an objective was judged on is shaded on the timeline
    assert charts["timeline"]["bands"] == [{"x0": 1.0, "x1": 2.0, "label": "window 1-2 s"}]


def _jsonl(tmp_path: Path, result: ProfileResult) -> list[str]:
    export_files(result, tmp_path / "raw")
    return (tmp_path / "raw" / "profile_export.jsonl").read_text().splitlines()


def test_the_timeline_hovers_show_id_start_end_and_error(tmp_path: Path,
                                                         run_200: ProfileResult) -> None:
    lines = [json.loads(line) for line in _jsonl(tmp_path, run_200)]
    charts = _charts(tmp_path / "root", run_200, [])
    timeline = charts["timeline"]
    by_name = {s["name"]: s["data"] for s in timeline["series"]}
    assert set(by_name) == {"latency", "TTFT", "failed"}
    failed_lines = [line for line in lines if line.get("error")]
    assert len(by_name["failed"]) == len(failed_lines) == run_200.error_count
    first = min(failed_lines, key=lambda line: line["metadata"]["request_start_ns"])
    start, duration, end, key, error = by_name["failed"][0]
    requests = timeline["requests"]
    assert requests["ids"][key] == str(first["metadata"]["credit_id"])
    assert start == pytest.approx(first["metadata"]["request_start_ns"] / 1e9, abs=1e-4)
    assert end - start == pytest.approx(duration / 1000, abs=2e-4)
    # each error text written once, each failed point pointing at it
    assert requests["errors"] == ["500 Server Error: x"] and error == 0
    assert {pt[4] for pt in by_name["failed"]} == {0}
    assert {pt[4] for pt in by_name["latency"]} == {-1}
    # a latency point and the TTFT point of the same request share its id
    assert {pt[3] for pt in by_name["latency"]} == {pt[3] for pt in by_name["TTFT"]}
    assert len(requests["ids"]) == len(lines)
    assert len(by_name["latency"]) == run_200.request_count
    ok = [line for line in lines if not line.get("error")]
    slowest = max(ok, key=lambda line: line["metrics"]["request_latency"]["value"])
    assert max(pt[1] for pt in by_name["latency"]) == pytest.approx(
        slowest["metrics"]["request_latency"]["value"], abs=1e-3)


def test_errors_are_stacked_by_kind_and_none_is_said(tmp_path: Path,
                                                     run_200: ProfileResult) -> None:
    errors = _charts(tmp_path / "a", run_200, [])["errors"]
    assert [s["name"] for s in errors["series"]] == ["500 Server Error"]
    assert sum(pt[1] for pt in errors["series"][0]["data"]) == run_200.error_count
    clean = _charts(tmp_path / "b", synthetic_result(50, error_share=0.0), [])["errors"]
    assert clean["series"] == [] and clean["note"] == "no failed requests"


def test_the_load_chart_has_throughput_and_in_flight_on_two_axes(
        tmp_path: Path, run_200: ProfileResult) -> None:
    load = _charts(tmp_path, run_200, [])["load"]
    assert [(s["name"], bool(s.get("y2"))) for s in load["series"]] == [
        ("throughput", False), ("in flight", True)]
    in_flight = [pt[1] for pt in load["series"][1]["data"]]
    assert max(in_flight) <= 4.0 + 1e-6  # 4 closed-loop slots


def test_a_compared_run_gets_before_after_cdfs(tmp_path: Path) -> None:
    before, after = synthetic_result(80, seed=1), synthetic_result(80, seed=2, ttft_ms=60.0)
    stored = Storage(tmp_path / "store").save("t.py::test_a", before, "base")
    session_root(tmp_path / "root", {"t.py::test_a": (after, [], "PASS")})
    summary = json.loads((tmp_path / "root" / "summary.json").read_text())
    summary["load_tests"][0]["baseline"] = {"status": "compared", "which": "latest",
                                            "source": "0001_base", "path": str(stored)}
    (tmp_path / "root" / "summary.json").write_text(json.dumps(summary))
    charts = section_charts(load_report([tmp_path / "root"])[0])
    pairs = [c for c in charts if c["kind"] == "baseline"]
    assert [c["id"] for c in pairs] == ["test-1-before-after-time_to_first_token",
                                        "test-1-before-after-inter_token_latency",
                                        "test-1-before-after-request_latency"]
    names = [s["name"] for s in pairs[0]["series"]]
    assert names == ["this run", "baseline 0001_base"]
    assert pairs[0]["series"][1]["dashed"] is True
    base_x = [pt[0] for pt in pairs[0]["series"][1]["data"]]
    stored_values = Storage.read(stored).metric_values("time_to_first_token")
    assert base_x[-1] == pytest.approx(float(np.max(stored_values)), abs=1e-4)


def test_fit_x_keeps_near_thresholds_in_range() -> None:
    spec = {"series": [{"data": [[10.0, 0.1], [20.0, 1.0]]}], "x": {"name": "ms"},
            "vlines": [{"x": 25.0, "label": "a", "verdict": "PASS"},
                       {"x": -50.0, "label": "b", "verdict": "PASS"}], "bands": []}
    fit_x(spec)
    assert [v["x"] for v in spec["vlines"]] == [25.0]
    assert spec["offscale"][0]["label"] == "b: off scale, left"
    assert spec["x"]["min"] < 10.0 and spec["x"]["max"] > 25.0


def test_a_cdf_of_a_metric_no_run_measured_is_no_chart(tmp_path: Path) -> None:
    result = synthetic_result(20)
    session_root(tmp_path, {"t.py::test_a": (result, [], "PASS")})
    section = load_report([tmp_path])[0]
    section.runs[0].rows.values["inter_token_latency"][:] = np.nan  # type: ignore[union-attr]
    assert cdf_chart(section, "inter_token_latency") is None


def test_a_ladder_plots_p50_and_p99_against_throughput(tmp_path: Path) -> None:
    from aiperf.report.data import LadderPoint

    spec = ladder_chart("t.py::test_ladder", [LadderPoint("[1]", 10.0, 20.0, 30.0),
                                              LadderPoint("[4]", 35.0, 25.0, 60.0)], 1)
    assert spec["id"] == "ladder-1" and spec["title"].startswith("test_ladder")
    assert [(s["name"], s["data"]) for s in spec["series"]] == [
        ("latency p50", [[10.0, 20.0, "[1]"], [35.0, 25.0, "[4]"]]),
        ("latency p99", [[10.0, 30.0, "[1]"], [35.0, 60.0, "[4]"]])]


def test_server_metrics_in_a_test_dir_are_plotted(tmp_path: Path,
                                                  run_200: ProfileResult) -> None:
    session_root(tmp_path, {"t.py::test_a": (run_200, [], "PASS")})
    test_dir = tmp_path / "t.py_test_a"
    (test_dir / "server_metrics_export.json").write_text(json.dumps({"metrics": {
        "vllm:num_requests_running": {"type": "gauge", "series": [{"samples": {
            "timestamps_ns": [1, 2, 3], "values": [1.0, 2.0, 3.0]}}]}}}))
    charts = section_charts(load_report([tmp_path])[0])
    (server,) = [c for c in charts if c["kind"] == "server"]
    assert server["title"] == "server: vllm:num_requests_running"
    assert [pt[1] for pt in server["series"][0]["data"]] == [1.0, 2.0, 3.0]
    (test_dir / "server_metrics_export.json").write_text("{broken")
    section = load_report([tmp_path])[0]
    assert [c for c in section_charts(section) if c["kind"] == "server"] == []
    assert any("server metrics not drawn" in note for note in section.runs[0].notes)


def test_overlaid_ladders_get_a_line_per_source(tmp_path: Path) -> None:
    from aiperf.report.data import ladders

    for name in ("main", "pr"):
        session_root(tmp_path / name, {
            f"t.py::test_ladder[{c}]": (synthetic_result(30, slots=c, seed=c), [], "PASS")
            for c in (1, 2)})
    found = ladders(load_report([tmp_path / "main", tmp_path / "pr"]))
    spec = ladder_chart("t.py::test_ladder", found["t.py::test_ladder"], 1)
    main, pr = str(tmp_path / "main"), str(tmp_path / "pr")
    assert [s["name"] for s in spec["series"]] == [
        f"latency p50 · {main}", f"latency p99 · {main}", f"latency p50 · {pr}",
        f"latency p99 · {pr}"]
    assert [pt[2] for pt in spec["series"][0]["data"]] == ["[1]", "[2]"]
