"""A sketched run's artifacts say how its percentiles were made: the JSON per metric, the
CSV in a last scalar row; an exact run's artifacts are unchanged (AIPerf's shape)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from aiperf.exporters.base import export_files
from aiperf.exporters.csv_export import SKETCH_ROW
from aiperf.metrics.stats import summarize
from aiperf.results import MetricResult, ProfileResult
from aiperf.statistics.sketch import MetricSketch, sketch_summary


def _result(values: np.ndarray, accuracy: float | None) -> ProfileResult:
    if accuracy is None:
        latency = MetricResult("request_latency", "ms", summarize(values, "ms"), values)
    else:
        sketch = MetricSketch(accuracy)
        sketch.add(values)
        latency = MetricResult("request_latency", "ms", sketch_summary(sketch, "ms"),
                               sketch=sketch)
    count = MetricResult("request_count", "requests", {"avg": float(values.size)})
    return ProfileResult(run_id="r", metrics={"request_latency": latency,
                                              "request_count": count},
                         records=[], error_summary=[], invariant={"ok": True}, warnings=[],
                         was_cancelled=False, start_time=None, end_time=None)


def _csv(path: Path) -> list[list[str]]:
    with (path / "profile_export_aiperf.csv").open() as handle:
        return list(csv.reader(handle))


def test_a_sketched_run_states_its_accuracy_in_the_json_and_the_csv(tmp_path: Path) -> None:
    values = np.random.default_rng(5).lognormal(3.0, 0.5, size=300)
    export_files(_result(values, 0.005), tmp_path)
    document = json.loads((tmp_path / "profile_export_aiperf.json").read_text())
    latency = document["request_latency"]
    assert latency["method"] == "sketch" and latency["relative_accuracy"] == 0.005
    assert abs(latency["p99"] - np.percentile(values, 99)) <= 0.005 * np.percentile(values, 99)
    assert "method" not in document["request_count"]  # a count is exact
    rows = _csv(tmp_path)
    assert rows[-1] == [SKETCH_ROW, "0.005"]  # not rounded to 0.01 or 0.00


def test_an_exact_run_keeps_aiperfs_shape(tmp_path: Path) -> None:
    export_files(_result(np.arange(1.0, 51.0), None), tmp_path)
    document = json.loads((tmp_path / "profile_export_aiperf.json").read_text())
    assert "method" not in document["request_latency"]
    assert "relative_accuracy" not in document["request_latency"]
    assert all(SKETCH_ROW not in row for row in _csv(tmp_path))
