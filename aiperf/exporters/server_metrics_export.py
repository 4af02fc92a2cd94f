"""Server-metrics artifacts, AIPerf 0.13's shapes, written when the run scraped any
(``server_metrics=...``):

- ``server_metrics_export.json``: ``{"schema_version", "summary": {endpoints_configured,
  endpoints_successful, start_time, end_time, endpoint_info, phase_time_ranges},
  "metrics_phase": "profiling", "metrics": {<name>: {"type", "description", "unit"?,
  "series": [{"endpoint_url", "labels"?, "stats": {...}, "buckets"?}]}}, "input_config"}``;
  each gauge and counter series also carries ``"samples": {"timestamps_ns": [...],
  "values": [...]}``, every scrape's value, for plotting (not in AIPerf's file);
- ``server_metrics_export.csv``: one section per type (gauge, counter, histogram, unknown),
  each with its header ``Endpoint,Type,Metric,Unit,<stats>,<label columns>,Description``
  (histograms add ``buckets`` as ``le=count;...``), sections separated by a blank row.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from aiperf.exporters.base import Exporter
from aiperf.results import ProfileResult

JSON_FILE = "server_metrics_export.json"
CSV_FILE = "server_metrics_export.csv"
_SECTIONS = ("gauge", "counter", "histogram", "unknown")


def export_server_metrics(result: ProfileResult, output_dir: Path) -> dict[str, Path]:
    """Write both files when the result has server metrics; their paths by artifact name
    (``server_metrics_json``, ``server_metrics_csv``)."""
    if result.server is None:
        return {}
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = output_dir / JSON_FILE, output_dir / CSV_FILE
    json_path.write_text(json.dumps(server_metrics_document(result), indent=2),
                         encoding="utf-8")
    write_csv(result, csv_path)
    return {"server_metrics_json": json_path, "server_metrics_csv": csv_path}


def server_metrics_document(result: ProfileResult) -> dict[str, Any]:
    assert result.server is not None
    document = result.server.to_export_dict()
    document["benchmark_id"] = result.run_id  # as AIPerf ties its exports together
    config = result.config.safe_dump() if result.config else {}
    if config.get("server_metrics"):  # a /metrics URL may carry user:password too
        from aiperf.common.config import mask_url

        config["server_metrics"] = [mask_url(u) for u in config["server_metrics"]]
    document["input_config"] = config
    return _finite(document)


def write_csv(result: ProfileResult, path: Path) -> None:
    assert result.server is not None
    from aiperf.server_metrics.summary import stats_of

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        first = True
        for section in _SECTIONS:
            metrics = [m for m in result.server.metrics.values()
                       if m.type == section and m.series]
            if not metrics:
                continue
            if not first:
                writer.writerow([])
            first = False
            stats = list(stats_of(section))
            label_columns = sorted({k for m in metrics for s in m.series for k in s.labels})
            header = ["Endpoint", "Type", "Metric", "Unit", *stats, *label_columns,
                      "Description"]
            if section == "histogram":
                header.append("buckets")
            writer.writerow(header)
            for metric in sorted(metrics, key=lambda m: m.name):
                for series in metric.series:
                    row = [series.endpoint_url, section, metric.name, metric.unit or ""]
                    row += [_number(series.stats.get(stat)) for stat in stats]
                    row += [series.labels.get(k, "") for k in label_columns]
                    row.append(metric.description)
                    if section == "histogram":
                        row.append(";".join(f"{le}={n}" for le, n in
                                            (series.buckets or {}).items()))
                    writer.writerow(row)


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.6g}" if abs(value) < 1e15 else f"{value:.0f}"


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a number is left out (as AIPerf scrubs them)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()
                if not (isinstance(v, float) and not math.isfinite(v))}
    if isinstance(value, list):
        return [None if isinstance(v, float) and not math.isfinite(v) else _finite(v)
                for v in value]
    return value


class ServerMetricsJsonExporter(Exporter):
    def export(self) -> Path | None:
        if self.result.server is None:
            return None
        path = self.target("server_metrics_json")
        path.write_text(json.dumps(server_metrics_document(self.result), indent=2),
                        encoding="utf-8")
        return path


class ServerMetricsCsvExporter(Exporter):
    def export(self) -> Path | None:
        if self.result.server is None:
            return None
        path = self.target("server_metrics_csv")
        write_csv(self.result, path)
        return path
