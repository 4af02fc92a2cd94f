"""The dataset-loader plugin interface, and JSONL reading with file:line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError


class DatasetLoader:
    """Builds the list of turns for one run. Subclasses implement ``load``."""

    def __init__(self, config: UserConfig, tokenizer: Any) -> None:
        self.config = config
        self.tokenizer = tokenizer

    def load(self) -> list[Turn]:
        raise NotImplementedError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; errors name file and line."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"input_file: {file} does not exist")
    with file.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{file}:{lineno}: invalid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{file}:{lineno}: expected a JSON object per line")
            yield lineno, obj


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ConfigError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: field {key!r} has the wrong type ({value!r})")
    return value
