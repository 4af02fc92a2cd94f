"""``profile_export.jsonl``: one line per request (warmup included, marked by phase)."""

from __future__ import annotations

import json
from pathlib import Path

from aiperf.exporters.base import Exporter


class JsonlExporter(Exporter):
    def export(self) -> Path:
        path = self.target("jsonl")
        with path.open("w", encoding="utf-8") as handle:
            for record in self.result.records:
                handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        return path
