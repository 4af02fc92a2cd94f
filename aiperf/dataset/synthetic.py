"""Synthetic prompts: ISL and OSL drawn from normal distributions, seeded, offline."""

from __future__ import annotations

import numpy as np

from aiperf.dataset.base import DatasetLoader
from aiperf.dataset.models import Turn

# A fixed vocabulary: each entry is a single built-in token, so a prompt of n words is
# exactly n tokens for the built-in tokenizer (and close to it for real ones).
_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "de", "po", "li", "ma"]
VOCABULARY = [a + b for a in _SYLLABLES for b in _SYLLABLES] + [
    "the", "model", "token", "answer", "question", "server", "latency", "stream",
]
POOL_LIMIT = 1000


def sample_lengths(rng: np.random.Generator, mean: float, stddev: float, n: int) -> np.ndarray:
    if stddev <= 0:
        return np.full(n, int(mean), dtype=np.int64)
    return np.maximum(1, np.rint(rng.normal(mean, stddev, n))).astype(np.int64)


def words(rng: np.random.Generator, n: int) -> str:
    picks = rng.integers(0, len(VOCABULARY), n)
    return " ".join(VOCABULARY[i] for i in picks)


class SyntheticLoader(DatasetLoader):
    def load(self) -> list[Turn]:
        cfg = self.config
        total = (cfg.resolved_request_count() or POOL_LIMIT) + cfg.warmup_request_count
        size = max(1, min(total, POOL_LIMIT))
        rng = np.random.default_rng(cfg.random_seed)
        isl = sample_lengths(rng, cfg.isl, cfg.isl_stddev, size)
        osl = sample_lengths(rng, cfg.osl or 0, cfg.osl_stddev, size) if cfg.osl else None
        turns = []
        for i in range(size):
            text = words(rng, int(isl[i]))
            turns.append(Turn(
                text=text,
                input_tokens=self.tokenizer.count(text),
                output_length=int(osl[i]) if osl is not None else None,
            ))
        return turns
