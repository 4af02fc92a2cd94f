"""``single_turn`` JSONL: ``{"text": ..., "output_length"?: n, "timestamp"?: ms, "extra"?: {}}``."""

from __future__ import annotations

from pathlib import Path

from aiperf.dataset.base import DatasetLoader, int_field, number_field, read_jsonl, require
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError

_KEYS = {"text", "output_length", "timestamp", "extra"}


class SingleTurnLoader(DatasetLoader):
    def load(self) -> list[Turn]:
        assert self.config.input_file is not None
        file = Path(self.config.input_file).absolute()
        turns = []
        for lineno, obj in read_jsonl(file):
            where = f"{file}:{lineno}"
            unknown = set(obj) - _KEYS
            if unknown:
                raise ConfigError(
                    f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}"
                )
            text = require(obj, "text", str, where)
            output_length = int_field(obj, "output_length", where, default=self.config.osl)
            timestamp = number_field(obj, "timestamp", where)
            extra = obj.get("extra", {})
            if not isinstance(extra, dict):
                raise ConfigError(f"{where}: field 'extra' must be an object")
            turns.append(Turn(
                text=text, input_tokens=self.tokenizer.count(text),
                output_length=output_length, timestamp_ms=timestamp, extra=extra,
            ))
        if not turns:
            raise ConfigError(f"{file}: no entries")
        return turns
