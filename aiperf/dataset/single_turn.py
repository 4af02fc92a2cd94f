"""``single_turn`` JSONL: ``{"text": ..., "output_length"?: n, "timestamp"?: ms, "extra"?: {}}``."""

from __future__ import annotations

from pathlib import Path

import msgspec

from aiperf.dataset.base import DatasetLoader, int_field, number_field, read_jsonl, require
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError

_KEYS = {"text", "output_length", "timestamp", "extra"}


def _check_extra(extra: dict[str, object], where: str) -> None:
    """The dataset travels to the services as msgpack, whose integers are 64-bit: a JSON
    number beyond that is refused here, by line, not by a service's crash."""
    try:
        msgspec.msgpack.encode(extra)
    except OverflowError:
        raise ConfigError(f"{where}: field 'extra' holds an integer outside the 64-bit "
                          "range (-2**63 .. 2**64-1)") from None


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
            _check_extra(extra, where)
            turns.append(Turn(
                text=text, input_tokens=self.tokenizer.count(text),
                output_length=output_length, timestamp_ms=timestamp, extra=extra,
            ))
        if not turns:
            raise ConfigError(f"{file}: no entries")
        return turns
