"""Synthetic prompts: ISL and OSL drawn from normal distributions, seeded, offline.

Prompts that exercise a server's prefix cache: ``prompt_prefix_pool_size`` prefixes of
``prompt_prefix_length`` tokens, one drawn per prompt and put before it (the first turn
of a session), and one ``shared_system_prompt_length`` system prompt for every request.
Both count in each request's input tokens. Multi-turn sessions (``conversation_*``) group
the prompts into sessions (``dataset/sessions.py``).
"""

from __future__ import annotations

import math

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
# Turns of a synthetic session pool beyond this reuse earlier prompts.
TURN_POOL_LIMIT = 20_000


def sample_lengths(rng: np.random.Generator, mean: float, stddev: float, n: int) -> np.ndarray:
    if stddev <= 0:
        return np.full(n, int(mean), dtype=np.int64)
    return np.maximum(1, np.rint(rng.normal(mean, stddev, n))).astype(np.int64)


def words(rng: np.random.Generator, n: int) -> str:
    picks = rng.integers(0, len(VOCABULARY), n)
    return " ".join(VOCABULARY[i] for i in picks)


class SyntheticLoader(DatasetLoader):
    def load(self) -> list[Turn]:
        from aiperf.dataset.sessions import as_sessions, is_multi_turn

        cfg = self.config
        total = (cfg.resolved_request_count() or POOL_LIMIT) + cfg.warmup_request_count
        size = max(1, min(total, POOL_LIMIT))
        sessions = 0
        if is_multi_turn(cfg):
            sessions = cfg.conversation_num or max(
                1, min(POOL_LIMIT, math.ceil(size / cfg.conversation_turn_mean)))
            size = min(TURN_POOL_LIMIT, max(size, math.ceil(
                sessions * (cfg.conversation_turn_mean + cfg.conversation_turn_stddev))))
        rng = np.random.default_rng(cfg.random_seed)
        isl = sample_lengths(rng, cfg.isl, cfg.isl_stddev, size)
        osl = sample_lengths(rng, cfg.osl or 0, cfg.osl_stddev, size) if cfg.osl else None
        # Streams of their own (a list seed), so the prompts above stay the same draws
        # whether or not prefixes, a system prompt or sessions are asked for.
        prefixes: list[str] = []
        if cfg.prompt_prefix_pool_size and cfg.prompt_prefix_length:
            prefix_rng = np.random.default_rng([cfg.random_seed, 1])
            prefixes = [words(prefix_rng, cfg.prompt_prefix_length)
                        for _ in range(cfg.prompt_prefix_pool_size)]
            picks = prefix_rng.integers(0, len(prefixes), size)
        system = ""
        system_tokens = 0
        if cfg.shared_system_prompt_length:
            system = words(np.random.default_rng([cfg.random_seed, 2]),
                           cfg.shared_system_prompt_length)
            system_tokens = self.tokenizer.count(system)
        turns = []
        for i in range(size):
            text = words(rng, int(isl[i]))
            if prefixes:
                text = f"{prefixes[picks[i]]} {text}"
            turns.append(Turn(
                text=text,
                input_tokens=self.tokenizer.count(text) + system_tokens,
                output_length=int(osl[i]) if osl is not None else None,
                system=system, system_tokens=system_tokens,
            ))
        if sessions:
            turns = as_sessions(turns, cfg, np.random.default_rng([cfg.random_seed, 3]),
                                sessions)
            if prefixes:
                # A prefix opens a session; later turns are the conversation going on.
                turns = [t if t.turn_index == 0 or not prefixes else _without_prefix(
                    t, cfg.prompt_prefix_length, self.tokenizer) for t in turns]
        return turns


def _without_prefix(turn: Turn, prefix_words: int, tokenizer: object) -> Turn:
    text = turn.text.split(" ", prefix_words)[-1]
    count = tokenizer.count(text)  # type: ignore[attr-defined]
    return Turn(text=text, input_tokens=count + turn.system_tokens,
                output_length=turn.output_length, extra=turn.extra, session=turn.session,
                turn_index=turn.turn_index, delay_ms=turn.delay_ms,
                session_id=turn.session_id, system=turn.system,
                system_tokens=turn.system_tokens)
