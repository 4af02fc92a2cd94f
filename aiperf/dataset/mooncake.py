"""Mooncake traces: ``{"timestamp": ms, "input_length": n, "output_length": m, "hash_ids": [...]}``.

Each hash id stands for one block of ``BLOCK_SIZE`` tokens; the same id always yields the
same text, so requests that share leading hash ids share a prompt prefix (what a server's
prefix cache sees in the original trace). Other fields of a trace line are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aiperf.dataset.base import DatasetLoader, int_field, number_field, read_jsonl
from aiperf.dataset.models import Turn
from aiperf.dataset.synthetic import words
from aiperf.errors import ConfigError

BLOCK_SIZE = 512
MAX_HASH_ID = 2**63 - 1


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
        file = Path(self.config.input_file).absolute()
        turns = []
        for lineno, obj in read_jsonl(file):
            where = f"{file}:{lineno}"
            input_length = int_field(obj, "input_length", where)
            output_length = int_field(obj, "output_length", where, default=self.config.osl)
            timestamp = number_field(obj, "timestamp", where)
            hash_ids = obj.get("hash_ids") or []
            if not isinstance(hash_ids, list) or not all(
                isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= MAX_HASH_ID
                for h in hash_ids
            ):
                raise ConfigError(
                    f"{where}: field 'hash_ids' must be a list of non-negative integers")
            tokens: list[str] = []
            for hash_id in hash_ids:
                if len(tokens) >= input_length:
                    break  # blocks past the prompt's length add nothing to it
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
            raise ConfigError(f"{file}: no entries")
        return turns
