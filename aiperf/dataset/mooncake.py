"""Mooncake traces: ``{"timestamp": ms, "input_length": n, "output_length": m, "hash_ids": [...]}``.

Each hash id stands for one block of ``BLOCK_SIZE`` tokens; the same id always yields the
same text, so requests that share leading hash ids share a prompt prefix (what a server's
prefix cache sees in the original trace).
"""

from __future__ import annotations

import numpy as np

from aiperf.dataset.base import DatasetLoader, read_jsonl, require
from aiperf.dataset.models import Turn
from aiperf.dataset.synthetic import words
from aiperf.errors import ConfigError

BLOCK_SIZE = 512


class MooncakeTraceLoader(DatasetLoader):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._blocks: dict[int, list[str]] = {}

    def _block(self, hash_id: int) -> list[str]:
        block = self._blocks.get(hash_id)
        if block is None:
            rng = np.random.default_rng([self.config.random_seed, hash_id])
            block = self._blocks[hash_id] = words(rng, BLOCK_SIZE).split(" ")
        return block

    def load(self) -> list[Turn]:
        assert self.config.input_file is not None
        turns = []
        for lineno, obj in read_jsonl(self.config.input_file):
            where = f"{self.config.input_file}:{lineno}"
            input_length = require(obj, "input_length", int, where)
            if input_length < 1:
                raise ConfigError(f"{where}: input_length must be positive")
            output_length = obj.get("output_length", self.config.osl)
            timestamp = obj.get("timestamp")
            if timestamp is not None and not isinstance(timestamp, int | float):
                raise ConfigError(f"{where}: timestamp must be a number of milliseconds")
            hash_ids = obj.get("hash_ids", [])
            if not isinstance(hash_ids, list) or not all(isinstance(h, int) for h in hash_ids):
                raise ConfigError(f"{where}: hash_ids must be a list of integers")
            tokens: list[str] = []
            for hash_id in hash_ids:
                tokens.extend(self._block(hash_id))
            if len(tokens) < input_length:
                rng = np.random.default_rng([self.config.random_seed, lineno])
                tokens.extend(words(rng, input_length - len(tokens)).split(" "))
            text = " ".join(tokens[:input_length])
            turns.append(Turn(
                text=text, input_tokens=self.tokenizer.count(text),
                output_length=output_length, timestamp_ms=timestamp,
            ))
        if not turns:
            raise ConfigError(f"{self.config.input_file}: no entries")
        return turns
