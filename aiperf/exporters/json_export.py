"""``profile_export_aiperf.json``: one key per metric, plus input_config and error_summary."""

from __future__ import annotations

import json
from pathlib import Path

from aiperf.exporters.base import Exporter


class JsonExporter(Exporter):
    def export(self) -> Path:
        path = self.target("json")
        path.write_text(json.dumps(self.result.to_dict(), indent=2), encoding="utf-8")
        return path
