"""The dataset-loader plugin interface, and JSONL reading with file:line errors.

Anything in a dataset file is outside input: every problem with it (bad UTF-8, a line that
is not a JSON object, a missing or mistyped field, a number out of range) is a
``ConfigError`` naming ``file:line`` and the field, raised while the run is configured,
before any request is sent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError

# A prompt or an answer longer than this is a mistake in the file (a million words of
# prompt is already megabytes of text per request), not a load to generate.
MAX_TOKENS = 1_000_000
_MISSING: Any = object()


class DatasetLoader:
    """Builds the list of turns for one run. Subclasses implement ``load``."""

    def __init__(self, config: UserConfig, tokenizer: Any) -> None:
        self.config = config
        self.tokenizer = tokenizer

    def load(self) -> list[Turn]:
        raise NotImplementedError


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; errors name file and line."""
    file = Path(path).absolute()
    if not file.is_file():
        raise ConfigError(f"input_file: {file} does not exist")
    with file.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(
                    f"{file}:{lineno}: not valid UTF-8 (byte {exc.start} of the line)"
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{file}:{lineno}: invalid JSON: {exc.msg}") from None
            except (ValueError, RecursionError) as exc:  # huge integers, deep nesting
                raise ConfigError(f"{file}:{lineno}: unreadable JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{file}:{lineno}: expected a JSON object per line")
            if "\\ud" in line.lower():
                _check_encodable(obj, f"{file}:{lineno}")
            yield lineno, obj


def _check_encodable(obj: dict[str, Any], where: str) -> None:
    """An escaped lone surrogate ("\\ud800") decodes, but no request body can carry it."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: contains an unpaired surrogate escape (not text)") from None


def require(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise ConfigError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ConfigError(f"{where}: field {key!r} has the wrong type ({_short(value)})")
    return value


def int_field(obj: dict[str, Any], key: str, where: str, *, default: Any = _MISSING,
              minimum: int = 1, maximum: int = MAX_TOKENS) -> Any:
    """An integer field in ``[minimum, maximum]``; ``default`` when absent (or null) and
    a default is given, else a missing field."""
    value = obj.get(key)
    if value is None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing field {key!r}")
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: field {key!r} must be an integer ({_short(value)})")
    if not minimum <= value <= maximum:
        raise ConfigError(
            f"{where}: field {key!r} must be between {minimum} and {maximum} (got {value})")
    return value


def number_field(obj: dict[str, Any], key: str, where: str) -> float | None:
    """An optional finite number (int or float)."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{where}: field {key!r} must be a number ({_short(value)})")
    if not math.isfinite(value) or abs(value) > 1e15:
        raise ConfigError(f"{where}: field {key!r} must be a finite number of milliseconds "
                          f"(got {_short(value)})")
    return float(value) if isinstance(value, float) else value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
