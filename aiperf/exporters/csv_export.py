"""``profile_export_aiperf.csv``: per-request metric rows, a blank line, scalar rows (and,
in sketch mode, a last one: the percentiles' relative accuracy)."""

from __future__ import annotations

import csv
from pathlib import Path

from aiperf.exporters.base import Exporter
from aiperf.metrics.definitions import PERCENTILES

# The scalar row a sketched run adds: its percentiles' relative accuracy.
SKETCH_ROW = "Sketch Percentile Relative Accuracy (ratio)"
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
            # Sketch mode: how far the percentiles above may be from the exact ones (one
            # accuracy for the run; two decimals would round 0.005 away).
            accuracy = next((m.relative_accuracy for m in metrics.values()
                             if m.relative_accuracy is not None), None)
            if accuracy is not None:
                writer.writerow([SKETCH_ROW, f"{accuracy:g}"])
        return path


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
