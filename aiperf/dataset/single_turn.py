"""``single_turn`` JSONL: ``{"text": ..., "output_length"?: n, "timestamp"?: ms, "extra"?: {}}``."""

from __future__ import annotations

from aiperf.dataset.base import DatasetLoader, read_jsonl, require
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError

_KEYS = {"text", "output_length", "timestamp", "extra"}


class SingleTurnLoader(DatasetLoader):
    def load(self) -> list[Turn]:
        assert self.config.input_file is not None
        turns = []
        for lineno, obj in read_jsonl(self.config.input_file):
            where = f"{self.config.input_file}:{lineno}"
            unknown = set(obj) - _KEYS
            if unknown:
                raise ConfigError(
                    f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}"
                )
            text = require(obj, "text", str, where)
            output_length = obj.get("output_length", self.config.osl)
            if output_length is not None and (
                not isinstance(output_length, int) or output_length < 1
            ):
                raise ConfigError(f"{where}: output_length must be a positive integer")
            timestamp = obj.get("timestamp")
            if timestamp is not None and not isinstance(timestamp, int | float):
                raise ConfigError(f"{where}: timestamp must be a number of milliseconds")
            extra = obj.get("extra", {})
            if not isinstance(extra, dict):
                raise ConfigError(f"{where}: extra must be an object")
            turns.append(Turn(
                text=text, input_tokens=self.tokenizer.count(text),
                output_length=output_length, timestamp_ms=timestamp, extra=extra,
            ))
        if not turns:
            raise ConfigError(f"{self.config.input_file}: no entries")
        return turns
