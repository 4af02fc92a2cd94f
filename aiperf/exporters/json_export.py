"""``profile_export_aiperf.json``: one key per metric, plus input_config and error_summary.

Sketch mode: each sketched metric's entry also says how its percentiles were made
(``"method": "sketch"``, ``"relative_accuracy"``: each percentile within that share of the
exact value; avg, min, max, std, sum and count exact); exact metrics carry neither key,
as AIPerf's do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiperf.exporters.base import Exporter
from aiperf.results import ProfileResult


class JsonExporter(Exporter):
    def export(self) -> Path:
        path = self.target("json")
        path.write_text(json.dumps(document(self.result), indent=2), encoding="utf-8")
        return path


def document(result: ProfileResult) -> dict[str, Any]:
    """The file's content: the result's dict, each sketched metric marked as such."""
    out = result.to_dict()
    for tag, metric in result.metrics.items():
        accuracy = metric.relative_accuracy
        if accuracy is not None and isinstance(out.get(tag), dict):
            out[tag]["method"] = "sketch"
            out[tag]["relative_accuracy"] = accuracy
    return out
