"""The exporter plugin interface, and ``export_all`` that runs every listed exporter."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import ExporterMetadata
from aiperf.results import ProfileResult

FILE_EXPORTERS = ("json", "csv", "jsonl")


class Exporter:
    """Writes one artifact of a result (or prints it, for the console)."""

    def __init__(self, result: ProfileResult, output_dir: Path | None,
                 stream: TextIO | None = None) -> None:
        self.result = result
        self.output_dir = output_dir
        self.stream = stream or sys.stdout

    def target(self, name: str) -> Path:
        assert self.output_dir is not None
        meta = plugins.get_metadata(PluginType.EXPORTER, name)
        assert isinstance(meta, ExporterMetadata) and meta.file_name
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir / meta.file_name

    def export(self) -> Path | None:
        raise NotImplementedError


def export_files(result: ProfileResult, output_dir: Path,
                 names: tuple[str, ...] = FILE_EXPORTERS) -> dict[str, Path]:
    """Write every artifact into ``output_dir``; record their paths on the result."""
    for name in names:
        exporter = plugins.get_class(PluginType.EXPORTER, name)(result, output_dir)
        path = exporter.export()
        if path is not None:
            result.artifacts[name] = path
    if set(names) == set(FILE_EXPORTERS):  # every artifact: the time slices too, when asked
        from aiperf.exporters.timeslice_export import export_timeslices

        result.artifacts.update(export_timeslices(result, output_dir))
        if result.server is not None:
            from aiperf.exporters.server_metrics_export import export_server_metrics

            result.artifacts.update(export_server_metrics(result, output_dir))
    return result.artifacts
