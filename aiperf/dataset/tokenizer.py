"""Tokenizers. The built-in one needs no download: one token per word or punctuation mark.
It is what the synthetic dataset and the mock server count with, so the numbers agree
offline; point ``tokenizer`` at a local ``tokenizer.json`` to count as a real model does."""

from __future__ import annotations

import re
from pathlib import Path

from aiperf.errors import ConfigError

_TOKEN = re.compile(r"\w+|[^\w\s]")


class BuiltinTokenizer:
    def __init__(self, path: str | None = None) -> None:
        self.path = path

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def encode(self, text: str) -> list[str]:
        return _TOKEN.findall(text)


class HuggingFaceTokenizer:
    def __init__(self, path: str | None = None) -> None:
        if not path:
            raise ConfigError("tokenizer: the 'huggingface' tokenizer needs a tokenizer.json path")
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ConfigError(
                "tokenizer: install the extra 'pytest-aiperf[tokenizers]' to use a tokenizer.json"
            ) from exc
        file = Path(path)
        if file.is_dir():
            file = file / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"tokenizer: {file} does not exist")
        self._tokenizer = Tokenizer.from_file(str(file))

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens


def make_tokenizer(path: str | None) -> BuiltinTokenizer | HuggingFaceTokenizer:
    return HuggingFaceTokenizer(path) if path else BuiltinTokenizer()
