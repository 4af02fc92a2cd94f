"""``profile_export.jsonl``: one line per request (warmup included, marked by phase).

A result read from the records manager's file already holds these exact lines, so the
file is linked or copied, never decoded; a table in memory is written one line at a time,
encoded as the records manager encodes it (the same bytes either way)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from aiperf.exporters.base import Exporter
from aiperf.records_file import NoRecords, RecordsFile


class JsonlExporter(Exporter):
    def export(self) -> Path | None:
        records = self.result.records
        if isinstance(records, NoRecords):  # an empty file would read as "no requests"
            return None
        path = self.target("jsonl")
        if isinstance(records, RecordsFile):
            return records.copy_to(path)
        encode = msgspec.json.Encoder().encode
        path.unlink(missing_ok=True)  # it may be a link to another result's table
        with path.open("wb", buffering=1 << 20) as handle:
            for record in records:
                handle.write(encode(record) + b"\n")
        return path
