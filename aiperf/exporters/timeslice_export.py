"""Time-slice artifacts, AIPerf 0.13's shapes, written when the profile sets
``slice_duration``:

- ``profile_export_aiperf_timeslices.json``: ``{"timeslices": [{"start_ns", "end_ns",
  "is_complete"?, <tag>: {"unit", "avg", ...}}, ...], "input_config": {...}}``, slices in
  time order (position is the slice index; a slice without requests is left out);
- ``profile_export_aiperf_timeslices.csv``: tidy rows
  ``Timeslice,Start_NS,End_NS,Metric,Unit,Stat,Value``.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from aiperf.exporters.csv_export import RECORD_COLUMNS
from aiperf.results import ProfileResult

JSON_FILE = "profile_export_aiperf_timeslices.json"
CSV_FILE = "profile_export_aiperf_timeslices.csv"
_BOUNDS = ("start_ns", "end_ns", "is_complete")


def export_timeslices(result: ProfileResult, output_dir: Path) -> dict[str, Path]:
    """Write both files when the result has slices; their paths by artifact name."""
    rows = result.slices
    if not rows:
        return {}
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = output_dir / JSON_FILE, output_dir / CSV_FILE
    document = {
        "timeslices": [_finite(row) for row in rows],
        "input_config": result.config.safe_dump() if result.config else {},
    }
    json_path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Timeslice", "Start_NS", "End_NS", "Metric", "Unit", "Stat", "Value"])
        for index, row in enumerate(rows):
            for tag in sorted(set(row) - set(_BOUNDS)):
                stats = row[tag]
                metric = result.metrics.get(tag)
                name = metric.header if metric is not None else tag
                for stat in RECORD_COLUMNS:
                    value = stats.get(stat)
                    if value is not None:
                        writer.writerow([index, row["start_ns"], row["end_ns"], name,
                                         stats.get("unit", ""), stat, f"{value:.2f}"])
    return {"timeslices_json": json_path, "timeslices_csv": csv_path}


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """A row without the statistics that have no finite value (an error-adjusted
    percentile that falls on a failed request), as AIPerf leaves them out."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out[key] = {k: v for k, v in value.items()
                        if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
        else:
            out[key] = value
    return out
