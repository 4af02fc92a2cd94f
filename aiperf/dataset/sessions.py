"""Multi-turn sessions: synthetic ones, AIPerf's ``multi_turn`` JSONL and ShareGPT JSON.

A session is consecutive dataset entries (``Turn.session``, ``turn_index`` 0, 1, ...). The
entries hold only the user's messages: what the model answered is not in the dataset but
taken from the server's real answer to the previous turn while the session runs
(``services/worker.py``), so each turn's history is what a chat client would send.

* ``multi_turn`` JSONL, one session per line: ``{"session_id": "s1", "turns": [{"text":
  "...", "delay": ms, "output_length": n}, ...]}`` (AIPerf's names; ``texts`` may stand
  for ``text`` as a list, joined by spaces).
* ``sharegpt``: a local JSON file, a list of ``{"id": ..., "conversations": [{"from":
  "human"|"gpt"|..., "value": "..."}]}``; the human messages are the turns (the canned
  answers are not sent: the server's own are). Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aiperf.common.config import UserConfig
from aiperf.dataset.base import MAX_TOKENS, DatasetLoader, int_field, number_field, read_jsonl
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError

MAX_TURNS = 1000
_TURN_KEYS = {"text", "texts", "delay", "output_length", "role", "timestamp"}
_SESSION_KEYS = {"session_id", "turns", "type"}
_HUMAN = {"human", "user"}
_ANSWER = {"gpt", "assistant", "model", "chatgpt", "bard", "bing"}


def is_multi_turn(config: UserConfig) -> bool:
    """Whether a synthetic dataset is made of sessions."""
    return (config.conversation_num is not None or config.conversation_turn_mean > 1
            or config.conversation_turn_stddev > 0)


def whole_session_leases(config: UserConfig) -> bool:
    """Whether a run is bounded by sessions (``conversation_num`` alone): then leases hold
    whole sessions and a session takes its turns' ids when it starts, so exactly that many
    sessions run, each to its last turn. Otherwise (a request count or a duration bounds
    the run) a turn takes an id when it is sent, like any request, and the sessions in
    progress when the run ends stop there."""
    return (config.conversation_num is not None and config.request_count is None
            and config.benchmark_duration is None)


def turn_delays(config: UserConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """Think times (ms) for ``n`` turns after a session's first: normal(mean, stddev)
    clamped at 0, times the ratio."""
    mean, stddev = config.conversation_turn_delay_mean, config.conversation_turn_delay_stddev
    delays = (np.maximum(0.0, rng.normal(mean, stddev, n)) if stddev > 0
              else np.full(n, float(mean)))
    return delays * config.conversation_turn_delay_ratio


def turn_counts(config: UserConfig, rng: np.random.Generator, sessions: int) -> np.ndarray:
    mean, stddev = config.conversation_turn_mean, config.conversation_turn_stddev
    if stddev <= 0:
        return np.full(sessions, max(1, round(mean)), dtype=np.int64)
    return np.clip(np.rint(rng.normal(mean, stddev, sessions)), 1, MAX_TURNS).astype(np.int64)


def as_sessions(prompts: list[Turn], config: UserConfig, rng: np.random.Generator,
                sessions: int) -> list[Turn]:
    """Synthetic prompts grouped into ``sessions`` sessions of drawn turn counts and
    delays: the prompts are taken in order (and again from the start if too few)."""
    counts = turn_counts(config, rng, sessions)
    delays = turn_delays(config, rng, int(counts.sum()))
    out: list[Turn] = []
    for session, count in enumerate(counts):
        for index in range(int(count)):
            prompt = prompts[len(out) % len(prompts)]
            out.append(Turn(
                text=prompt.text, input_tokens=prompt.input_tokens,
                output_length=prompt.output_length, extra=prompt.extra,
                session=session, turn_index=index,
                delay_ms=float(delays[len(out)]) if index else 0.0,
                session_id=f"session_{session}", system=prompt.system,
                system_tokens=prompt.system_tokens,
            ))
    return out


def _text_of(turn: dict[str, Any], where: str) -> str:
    text = turn.get("text")
    if text is None and "texts" in turn:
        texts = turn["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ConfigError(f"{where}: field 'texts' must be a list of strings")
        text = " ".join(texts)
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}: field 'text' must be a non-empty string")
    return text


class MultiTurnLoader(DatasetLoader):
    """AIPerf's ``multi_turn`` JSONL: one session per line."""

    def load(self) -> list[Turn]:
        cfg = self.config
        assert cfg.input_file is not None
        file = Path(cfg.input_file).absolute()
        turns: list[Turn] = []
        for sessions, (lineno, obj) in enumerate(read_jsonl(file)):
            where = f"{file}:{lineno}"
            unknown = set(obj) - _SESSION_KEYS
            if unknown:
                raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: "
                                  f"{sorted(_SESSION_KEYS)}")
            session_id = obj.get("session_id", f"session_{sessions}")
            if not isinstance(session_id, str | int) or isinstance(session_id, bool):
                raise ConfigError(f"{where}: field 'session_id' must be a string")
            entries = obj.get("turns")
            if not isinstance(entries, list) or not entries:
                raise ConfigError(f"{where}: field 'turns' must be a non-empty list")
            if len(entries) > MAX_TURNS:
                raise ConfigError(f"{where}: {len(entries)} turns (at most {MAX_TURNS})")
            for index, entry in enumerate(entries):
                at = f"{where}: turns[{index}]"
                if not isinstance(entry, dict):
                    raise ConfigError(f"{at}: expected an object")
                unknown = set(entry) - _TURN_KEYS
                if unknown:
                    raise ConfigError(f"{at}: unknown field(s) {sorted(unknown)}; allowed: "
                                      f"{sorted(_TURN_KEYS)}")
                text = _text_of(entry, at)
                delay = number_field(entry, "delay", at) or 0.0
                if delay < 0:
                    raise ConfigError(f"{at}: field 'delay' must not be negative")
                turns.append(Turn(
                    text=text, input_tokens=self.tokenizer.count(text),
                    output_length=int_field(entry, "output_length", at, default=cfg.osl),
                    session=sessions, turn_index=index,
                    delay_ms=float(delay) * cfg.conversation_turn_delay_ratio if index else 0.0,
                    session_id=str(session_id),
                ))
        if not turns:
            raise ConfigError(f"{file}: no sessions")
        return turns


class ShareGPTLoader(DatasetLoader):
    """A local ShareGPT JSON file: the human messages of each conversation are its turns."""

    def load(self) -> list[Turn]:
        cfg = self.config
        assert cfg.input_file is not None
        file = Path(cfg.input_file).absolute()
        if not file.is_file():
            raise ConfigError(f"input_file: {file} does not exist")
        try:
            data = json.loads(file.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(f"{file}: not a ShareGPT JSON file: {exc}") from None
        if not isinstance(data, list):
            raise ConfigError(f"{file}: expected a JSON list of conversations")
        rng = np.random.default_rng(cfg.random_seed)
        turns: list[Turn] = []
        sessions = 0
        for position, item in enumerate(data):
            where = f"{file}: [{position}]"
            if not isinstance(item, dict) or not isinstance(item.get("conversations"), list):
                raise ConfigError(f"{where}: expected an object with a 'conversations' list")
            human: list[str] = []
            # Each human message's max_tokens is the token count of the answer right after
            # it, as AIPerf 0.13 and vLLM bench take it (osl when it has none).
            answer_tokens: list[int | None] = []
            awaiting = False  # the last user/answer message was a kept human one
            for index, message in enumerate(item["conversations"]):
                if not isinstance(message, dict) or not isinstance(message.get("value"), str):
                    raise ConfigError(f"{where}.conversations[{index}]: expected an object "
                                      "with a string 'value'")
                role = str(message.get("from", "")).lower()
                if role in _HUMAN and message["value"].strip():
                    try:
                        message["value"].encode("utf-8")
                    except UnicodeEncodeError:
                        raise ConfigError(
                            f"{where}.conversations[{index}]: 'value' holds an unpaired "
                            "surrogate escape (not text)") from None
                    human.append(message["value"])
                    answer_tokens.append(None)
                    awaiting = True
                    continue
                if role in _ANSWER:
                    if awaiting and message["value"].strip():
                        answer_tokens[-1] = min(MAX_TOKENS, max(
                            1, self.tokenizer.count(message["value"])))
                    awaiting = False
                elif role in _HUMAN:
                    awaiting = False  # an empty human message: the answer after it is its own
                elif role not in ("system", ""):
                    raise ConfigError(f"{where}.conversations[{index}]: unknown 'from' "
                                      f"{message.get('from')!r}")
            if not human:
                continue  # a conversation without a user message has nothing to send
            human = human[:MAX_TURNS]
            delays = turn_delays(cfg, rng, len(human))
            session_id = item.get("id", f"session_{sessions}")
            for index, text in enumerate(human):
                count = self.tokenizer.count(text)
                if count > MAX_TOKENS:
                    raise ConfigError(f"{where}: a message of {count} tokens")
                turns.append(Turn(
                    text=text, input_tokens=count,
                    output_length=answer_tokens[index] or cfg.osl,
                    session=sessions, turn_index=index,
                    delay_ms=float(delays[index]) if index else 0.0,
                    session_id=str(session_id),
                ))
            sessions += 1
        if not turns:
            raise ConfigError(f"{file}: no conversation with a human message")
        return turns
