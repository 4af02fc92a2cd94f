"""Synthetic rankings requests: one query and a few passages each, seeded, offline.

A rankings request is not a prompt: it is a query and passages to score against it. The
query is the turn's ``text`` (so every other part of the tool that shows or counts a
prompt still works) and the passages travel in ``extra["passages"]``, which the rankings
endpoints take out of the body and put where their protocol wants them. A JSONL file
(``single_turn``) gives passages the same way: ``{"text": "query", "extra": {"passages":
["...", "..."]}}``.

The input length of a request is the query and its passages counted together, joined by
spaces, as AIPerf counts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiperf.common.config import UserConfig
from aiperf.dataset.base import DatasetLoader
from aiperf.dataset.models import Turn
from aiperf.dataset.synthetic import POOL_LIMIT, sample_lengths, words

PASSAGES_KEY = "passages"
# AIPerf picks the rankings generator for every endpoint whose name says rankings.
_RANKINGS_MARK = "rankings"


def uses_rankings_dataset(config: UserConfig) -> bool:
    """Whether the run's synthetic dataset is rankings requests: the synthetic dataset was
    not chosen by name, and the endpoint is a rankings one."""
    return (config.dataset is None and config.input_file is None
            and _RANKINGS_MARK in config.endpoint_type.lower())


def dataset_name(config: UserConfig) -> str:
    """The dataset loader plugin a run uses (the rankings generator stands in for the
    synthetic prompts when the endpoint ranks)."""
    return "synthetic_rankings" if uses_rankings_dataset(config) else config.resolved_dataset()


def passages_of(turn: Turn) -> list[Any]:
    """The passages a turn carries (an empty list when it carries none)."""
    passages = turn.extra.get(PASSAGES_KEY)
    if passages is None:
        return []
    if isinstance(passages, str):
        return [passages]
    if not isinstance(passages, list):
        raise ValueError(f"extra.{PASSAGES_KEY} must be a list of passages, got "
                         f"{type(passages).__name__}")
    return passages


class SyntheticRankingsLoader(DatasetLoader):
    def load(self) -> list[Turn]:
        cfg = self.config
        total = (cfg.resolved_request_count() or POOL_LIMIT) + cfg.warmup_request_count
        size = max(1, min(total, POOL_LIMIT))
        # Separate streams per quantity, so changing one setting leaves the others' draws.
        seeds = np.random.SeedSequence(cfg.random_seed).spawn(4)
        counts_rng, query_rng, passage_rng, text_rng = (np.random.default_rng(s)
                                                        for s in seeds)
        passage_counts = sample_lengths(counts_rng, cfg.rankings_passages_mean,
                                        cfg.rankings_passages_stddev, size)
        query_lengths = sample_lengths(query_rng, cfg.rankings_query_prompt_token_mean,
                                       cfg.rankings_query_prompt_token_stddev, size)
        turns = []
        for i in range(size):
            query = words(text_rng, int(query_lengths[i]))
            lengths = sample_lengths(passage_rng, cfg.rankings_passages_prompt_token_mean,
                                     cfg.rankings_passages_prompt_token_stddev,
                                     int(passage_counts[i]))
            passages = [words(text_rng, int(n)) for n in lengths]
            turns.append(Turn(
                text=query,
                input_tokens=self.tokenizer.count(" ".join([query, *passages])),
                extra={PASSAGES_KEY: passages},
            ))
        return turns
