"""``profile_export_aiperf.csv``: per-request metric rows, a blank line, scalar rows."""

from __future__ import annotations

import csv
from pathlib import Path

from aiperf.exporters.base import Exporter
from aiperf.metrics.definitions import PERCENTILES

RECORD_COLUMNS = ("avg", "min", "max", "sum", *(f"p{p}" for p in PERCENTILES), "std")


class CsvExporter(Exporter):
    def export(self) -> Path:
        path = self.target("csv")
        metrics = self.result.metrics
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Metric", *RECORD_COLUMNS])
            for metric in metrics.values():
                if metric.is_scalar or metric.tag.startswith("adj_"):
                    continue
                name = f"{metric.header} ({metric.unit})"
                writer.writerow([name, *(_cell(metric.stats.get(c)) for c in RECORD_COLUMNS)])
            writer.writerow([])
            writer.writerow(["Metric", "Value"])
            for metric in metrics.values():
                if metric.is_scalar:
                    writer.writerow([f"{metric.header} ({metric.unit})",
                                     _cell(metric.stats.get("avg"))])
        return path


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
