"""The server-metrics artifacts through the exporter plugins: written only when the run
scraped, in AIPerf's shapes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from aiperf.exporters.base import export_files
from aiperf.exporters.server_metrics_export import export_server_metrics
from tests.harness.prometheus_exporter import scraped_result as result_with_server

NAMES = ("server_metrics_json", "server_metrics_csv")


def test_the_plugins_write_both_files_in_aiperfs_shape(tmp_path: Path) -> None:
    result = result_with_server(4)
    paths = export_files(result, tmp_path, NAMES)
    assert paths["server_metrics_json"].name == "server_metrics_export.json"
    document = json.loads(paths["server_metrics_json"].read_text())
    assert set(document) == {"schema_version", "summary", "metrics_phase", "metrics",
                             "input_config", "benchmark_id"}
    assert document["metrics"]["ref:requests"]["series"][0]["stats"]["total"] == 28.0
    rows = list(csv.reader(paths["server_metrics_csv"].open()))
    sections = [r for r in rows if r[:2] == ["Endpoint", "Type"]]
    assert [s[5:8] for s in sections] == [["min", "max", "std"], ["rate", "Description"],
                                          ["sum", "avg", "count_rate"]]
    assert "model_name" in sections[0]  # label columns in the gauge section
    histogram_row = next(r for r in rows if r[2:3] == ["ref:latency_seconds"])
    assert histogram_row[-1] == "0.1=4;0.5=8;+Inf=10"
    assert [] in rows  # sections separated by an empty row


def test_a_run_without_server_metrics_writes_neither(tmp_path: Path) -> None:
    result = result_with_server(server=False)
    assert export_files(result, tmp_path, NAMES) == {}
    assert export_server_metrics(result, tmp_path) == {}
    assert not list(tmp_path.iterdir())


def test_credentials_in_a_metrics_url_stay_out_of_the_artifact(tmp_path: Path) -> None:
    from aiperf.common.config import UserConfig

    secret = "http://user:hunter2@127.0.0.1:9/metrics"
    result = result_with_server(3, url=secret)
    result.config = UserConfig.build(server_metrics=[secret])
    paths = export_server_metrics(result, tmp_path)
    for path in paths.values():
        assert "hunter2" not in path.read_text()
