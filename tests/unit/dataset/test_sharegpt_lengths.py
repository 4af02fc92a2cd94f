"""ShareGPT: a turn asks for as many tokens as the dataset's answer to it had (AIPerf 0.13's
and vLLM bench's max_tokens), counted with the run's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from aiperf.common.config import UserConfig
from aiperf.dataset.sessions import ShareGPTLoader
from aiperf.dataset.tokenizer import BuiltinTokenizer

TOKENIZER = BuiltinTokenizer()
LONG = "The capital of France is Paris, a city on the Seine with many museums."


def _load(tmp_path: Path, data: list[dict[str, object]], **config: object) -> list:
    path = tmp_path / "sg.json"
    path.write_text(json.dumps(data))
    return ShareGPTLoader(UserConfig(input_file=str(path), custom_dataset_type="sharegpt",
                                     **config), TOKENIZER).load()


def test_each_turn_asks_for_its_answers_token_count(tmp_path: Path) -> None:
    turns = _load(tmp_path, [
        {"id": "a", "conversations": [
            {"from": "system", "value": "be brief"},
            {"from": "human", "value": "capital of France?"},
            {"from": "system", "value": "a note between: not an answer, not a break"},
            {"from": "gpt", "value": LONG},
            {"from": "human", "value": "and Spain?"},
            {"from": "gpt", "value": "Madrid."},
            {"from": "gpt", "value": "a second answer belongs to no human message"},
            {"from": "human", "value": "thanks"}]},
        {"id": "b", "conversations": [{"from": "user", "value": "hi"},
                                      {"from": "assistant", "value": "Hello there!"}]},
    ], osl=77)
    assert [(t.session_id, t.text, t.output_length) for t in turns] == [
        ("a", "capital of France?", TOKENIZER.count(LONG)),
        ("a", "and Spain?", TOKENIZER.count("Madrid.")),
        ("a", "thanks", 77),  # no answer after it: the configured osl
        ("b", "hi", TOKENIZER.count("Hello there!")),
    ]
    assert TOKENIZER.count(LONG) > TOKENIZER.count("Madrid.") > 0


def test_an_answer_after_a_blank_human_message_is_not_the_earlier_ones(
        tmp_path: Path) -> None:
    # AIPerf pairs a human message with the answer next to it only: the blank message's
    # answer must not give the earlier question its length.
    turns = _load(tmp_path, [{"conversations": [
        {"from": "human", "value": "first"},
        {"from": "human", "value": "   "},
        {"from": "gpt", "value": LONG},
        {"from": "human", "value": "second"},
        {"from": "gpt", "value": "  "}]}], osl=9)
    assert [(t.text, t.output_length) for t in turns] == [("first", 9), ("second", 9)]
