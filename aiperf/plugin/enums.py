"""Plugin categories."""

from __future__ import annotations

from enum import StrEnum


class PluginType(StrEnum):
    """A category of plugins; the top-level keys of a plugins manifest."""

    SERVICE = "service"
    ENDPOINT = "endpoint"
    TRANSPORT = "transport"
    TIMING_STRATEGY = "timing_strategy"
    ARRIVAL_PATTERN = "arrival_pattern"
    DATASET_LOADER = "dataset_loader"
    EXPORTER = "exporter"
    TOKENIZER = "tokenizer"

    def __str__(self) -> str:
        return self.value
