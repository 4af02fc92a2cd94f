"""Time-slice artifacts, AIPerf 0.13's shapes, written when the profile sets
``slice_duration``:

- ``profile_export_aiperf_timeslices.json``: ``{"timeslices": [{"start_ns", "end_ns",
  "is_complete"?, <tag>: {"unit", "avg", ...}}, ...], "input_config": {...}}``, slices in
  time order (position is the slice index; a slice without requests is left out);
- ``profile_export_aiperf_timeslices.csv``: tidy rows
  ``Timeslice,Start_NS,End_NS,Metric,Unit,Stat,Value``.

Sketch mode keeps no per-request values, so its slices come from the per-window sketches
the records manager kept as the run went (``ProfileResult.sketch_windows``): the same
rows, each percentile within the sketch's relative accuracy, and only the metrics those
windows hold. The JSON's ``statistics`` block says so and names the metrics left out.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from aiperf.exporters.csv_export import RECORD_COLUMNS
from aiperf.metrics.definitions import BY_TAG
from aiperf.results import ProfileResult

log = logging.getLogger(__name__)

JSON_FILE = "profile_export_aiperf_timeslices.json"
CSV_FILE = "profile_export_aiperf_timeslices.csv"
_BOUNDS = ("start_ns", "end_ns", "is_complete")


def export_timeslices(result: ProfileResult, output_dir: Path) -> dict[str, Path]:
    """Write both files when the result has slices; their paths by artifact name."""
    rows, statistics = result.slices, None
    if not rows:
        rows, statistics = sketch_slices(result)
    if not rows:
        return {}
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = output_dir / JSON_FILE, output_dir / CSV_FILE
    document: dict[str, Any] = {
        "timeslices": [_finite(row) for row in rows],
        "input_config": result.config.safe_dump() if result.config else {},
    }
    if statistics is not None:
        document["statistics"] = statistics
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


def sketch_slices(result: ProfileResult) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Sketch mode's time-slice rows, from the records manager's window sketches, and the
    JSON's ``statistics`` block (method, relative accuracy, metrics left out and why);
    ``([], None)`` for a run that is not sketched or set no ``slice_duration``."""
    config = result.config
    seconds = getattr(config, "slice_duration", None) if config is not None else None
    if config is None or not config.sketch or not seconds:
        return [], None
    windows = result.sketch_windows(seconds)
    shipped = getattr(result, "_sketch_windows", None)
    if not windows or not shipped:
        # Only a run without a single request gets here (the windows' base length is the
        # slice duration itself): nothing to slice, but say why the files are missing.
        log.warning("slice_duration %gs: this sketched run kept no time windows, so no "
                    "time-slice files are written", seconds)
        return [], None
    bins = getattr(result, "_end_bins", None) or {}
    # The run's first start in perf_counter ns, what exact mode's slice bounds count from.
    origin = int(bins.get("first_start_ns") or 0)
    bounds = _window_bounds(shipped, float(seconds))
    if len(bounds) != len(windows):  # the grid below and the result's merge disagree
        log.warning("slice_duration %gs: the sketched windows could not be placed in time; "
                    "no time-slice files are written", seconds)
        return [], None
    from aiperf.statistics.sketch import sketch_summary, sketch_summary_adjusted

    rows: list[dict[str, Any]] = []
    for (low, high), window in zip(bounds, windows, strict=True):
        if window.n_ok + window.n_err == 0:
            continue
        row: dict[str, Any] = {"start_ns": origin + round(low * 1e9),
                               "end_ns": origin + round(high * 1e9)}
        if high - low < seconds:
            row["is_complete"] = False
        for tag, metric in result.metrics.items():
            base = tag.removeprefix("adj_")
            spec = BY_TAG.get(base)
            if spec is not None and spec.per_request:
                sketch = window.sketches.get(base)
                if sketch is None:
                    continue
                if tag != base:
                    if sketch.count + window.n_err:
                        row[tag] = sketch_summary_adjusted(sketch, window.n_err, metric.unit)
                elif sketch.count:
                    row[tag] = sketch_summary(sketch, metric.unit)
            elif tag in window.scalars:
                row[tag] = {"unit": metric.unit, "avg": window.scalars[tag]}
        rows.append(row)
    present = {tag for row in rows for tag in row}
    omitted = sorted(tag for tag in result.metrics
                     if tag not in present and _exact_mode_slices(tag))
    statistics = {
        "method": "sketch",
        "relative_accuracy": config.sketch_relative_accuracy,
        "note": "percentiles within relative_accuracy (relative) of the exact value; avg, "
                "min, max, std, sum and count exact",
        "omitted_metrics": omitted,
    }
    if omitted:
        statistics["omitted_reason"] = (
            "sketch mode keeps per-window sketches of a few latency metrics and each "
            "window's request counts only; rerun without --sketch for these per slice")
        log.warning("sketched time slices: %d metrics left out (not kept per window in "
                    "sketch mode; %s names them)", len(omitted), JSON_FILE)
    return rows, statistics


def _exact_mode_slices(tag: str) -> bool:
    """Whether exact mode's slices carry ``tag`` (when the slice has data for it)."""
    from aiperf.windows import _SCALARS  # the run-level metrics a slice recomputes

    spec = BY_TAG.get(tag.removeprefix("adj_"))
    return (spec is not None and spec.per_request) or tag in _SCALARS


def _window_bounds(shipped: dict[str, Any], window_s: float) -> list[tuple[float, float]]:
    """Each merged window's (start, end) in seconds since the run's first start, in the
    order ``ProfileResult.sketch_windows`` gives them: the same grid (window j spans
    ``offset_s + j * window_s`` onwards, the last one clipped at the run's end, a record
    outside the grid clipped into its first or last window), without the sketches."""
    base = float(shipped["base_s"])
    m = max(1, round(window_s / base))
    offset, end = float(shipped.get("offset_s", 0.0)), float(shipped["end_s"])
    indices = [int(w["index"]) for w in shipped["windows"]]
    if not indices:
        return []
    first = min(indices) // m
    last = max(first, math.ceil((end - offset) / window_s) - 1)
    out = []
    for j in sorted({min(max(k // m, first), last) for k in indices}):
        low = offset + j * window_s
        high = min(low + window_s, end) if j == last else low + window_s
        out.append((max(low, 0.0), high))
    return out
