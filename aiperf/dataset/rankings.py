"""Synthetic rankings requests: one query and a few passages each, seeded, offline.

A rankings request is not a prompt: it is a query and passages to score against it. The
query is the turn's ``text`` (so every other part of the tool that shows or counts a
prompt still works) and the passages travel in ``extra["passages"]``, which the rankings
endpoints take out of the body and put where their protocol wants them. A JSONL file
(``rankings_jsonl``, what a rankings endpoint reads a file with by default) gives them
as ``{"query": "...", "passages": ["...", ...]}``, as ``{"text": "query", "extra":
{"passages": [...]}}`` (single_turn's shape), or as AIPerf's named texts
(``{"texts": [{"name": "query", "contents": ["..."]}, {"name": "passages", "contents":
[...]}]}``).

The input length of a request is the query and its passages counted together, joined by
spaces, as AIPerf counts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiperf.common.config import UserConfig
from aiperf.dataset.base import DatasetLoader, number_field, read_jsonl
from aiperf.dataset.models import Turn
from aiperf.dataset.synthetic import POOL_LIMIT, sample_lengths, words
from aiperf.errors import ConfigError

PASSAGES_KEY = "passages"
# AIPerf picks the rankings generator for every endpoint whose name says rankings.
_RANKINGS_MARK = "rankings"


def uses_rankings_dataset(config: UserConfig) -> bool:
    """Whether the run's dataset is rankings requests by default: none was chosen by name,
    and the endpoint is a rankings one."""
    return (config.dataset is None and config.custom_dataset_type is None
            and _RANKINGS_MARK in config.endpoint_type.lower())


def dataset_name(config: UserConfig) -> str:
    """The dataset loader plugin a run uses: for a rankings endpoint, the rankings
    generator stands in for synthetic prompts and the rankings reader for a single_turn
    file (it counts the passages in the input length)."""
    if not uses_rankings_dataset(config):
        return config.resolved_dataset()
    return "synthetic_rankings" if config.input_file is None else "rankings_jsonl"


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


_FILE_KEYS = {"query", "passages", "text", "texts", "extra", "timestamp"}


def _strings(value: Any, where: str, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: field {field!r} must be a list of strings")
    return value


def _named_texts(texts: Any, where: str) -> tuple[str | None, list[str]]:
    """AIPerf's ``texts``: the query (``query`` / ``queries``) and the passages."""
    if not isinstance(texts, list):
        raise ConfigError(f"{where}: field 'texts' must be a list of {{name, contents}}")
    queries: list[str] = []
    passages: list[str] = []
    for item in texts:
        name = item.get("name") if isinstance(item, dict) else None
        if name not in ("query", "queries", "passages"):
            raise ConfigError(f"{where}: each of 'texts' needs a name of query, queries or "
                              f"passages (got {name!r})")
        contents = _strings(item.get("contents"), where, f"texts.{name}.contents")
        (passages if name == "passages" else queries).extend(contents)
    return (queries[0] if queries else None), passages


class RankingsFileLoader(DatasetLoader):
    """A JSONL file of rankings requests, one a line (see the module's docstring)."""

    def load(self) -> list[Turn]:
        assert self.config.input_file is not None
        turns = []
        for lineno, obj in read_jsonl(self.config.input_file):
            where = f"{self.config.input_file}:{lineno}"
            unknown = set(obj) - _FILE_KEYS
            if unknown:
                raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: "
                                  f"{sorted(_FILE_KEYS)}")
            extra = obj.get("extra", {})
            if not isinstance(extra, dict):
                raise ConfigError(f"{where}: field 'extra' must be an object")
            extra = dict(extra)
            if "texts" in obj:
                query, passages = _named_texts(obj["texts"], where)
            else:
                query = obj.get("query", obj.get("text"))
                passages = obj.get("passages", extra.get(PASSAGES_KEY, []))
            if not isinstance(query, str):
                raise ConfigError(f"{where}: a rankings request needs a 'query' string (or "
                                  "'text', or a texts item named query)")
            extra[PASSAGES_KEY] = _strings(passages, where, PASSAGES_KEY)
            turns.append(Turn(
                text=query,
                input_tokens=self.tokenizer.count(" ".join([query, *extra[PASSAGES_KEY]])),
                timestamp_ms=number_field(obj, "timestamp", where), extra=extra,
            ))
        if not turns:
            raise ConfigError(f"{self.config.input_file}: no entries")
        return turns
