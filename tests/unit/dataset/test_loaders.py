from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiperf.common.config import UserConfig
from aiperf.dataset.mooncake import BLOCK_SIZE, MooncakeTraceLoader
from aiperf.dataset.single_turn import SingleTurnLoader
from aiperf.dataset.synthetic import SyntheticLoader
from aiperf.dataset.tokenizer import BuiltinTokenizer, make_tokenizer
from aiperf.errors import ConfigError

TOKENIZER = BuiltinTokenizer()


def test_synthetic_prompts_have_exactly_isl_tokens_and_are_seeded() -> None:
    config = UserConfig(isl=50, osl=7, request_count=5)
    first = SyntheticLoader(config, TOKENIZER).load()
    again = SyntheticLoader(config, TOKENIZER).load()
    assert [t.text for t in first] == [t.text for t in again]
    assert {t.input_tokens for t in first} == {50}
    assert {TOKENIZER.count(t.text) for t in first} == {50}
    assert {t.output_length for t in first} == {7}
    other = SyntheticLoader(config.model_copy(update={"random_seed": 1}), TOKENIZER).load()
    assert [t.text for t in other] != [t.text for t in first]


def test_synthetic_lengths_follow_mean_and_stddev() -> None:
    config = UserConfig(isl=100, isl_stddev=10, osl=40, osl_stddev=5, request_count=1000)
    turns = SyntheticLoader(config, TOKENIZER).load()
    isl = np.array([t.input_tokens for t in turns])
    osl = np.array([t.output_length for t in turns])
    assert abs(isl.mean() - 100) < 2 and 8 < isl.std() < 12
    assert abs(osl.mean() - 40) < 1 and 4 < osl.std() < 6


def write(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_single_turn_reads_text_lengths_timestamps_and_extra(tmp_path: Path) -> None:
    path = write(tmp_path, [json.dumps({"text": "a b c", "output_length": 3, "timestamp": 5,
                                        "extra": {"top_p": 0.9}}),
                            "", json.dumps({"text": "d"})])
    turns = SingleTurnLoader(UserConfig(input_file=path, osl=9), TOKENIZER).load()
    assert [(t.text, t.input_tokens, t.output_length) for t in turns] == [
        ("a b c", 3, 3), ("d", 1, 9)]
    assert turns[0].timestamp_ms == 5 and turns[0].extra == {"top_p": 0.9}


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"data.jsonl:2: invalid JSON"),
    ('{"prompt": "x"}', r"data.jsonl:2: unknown field\(s\) \['prompt'\]"),
    ('{"output_length": 3}', r"data.jsonl:2: missing field 'text'"),
    ('{"text": "x", "output_length": 0}',
     r"data.jsonl:2: field 'output_length' must be between 1 and"),
    ('{"text": "x", "output_length": "12"}',
     r"data.jsonl:2: field 'output_length' must be an integer \('12'\)"),
    ('{"text": "x", "timestamp": "soon"}', r"data.jsonl:2: field 'timestamp' must be a number"),
    ('{"text": "x", "timestamp": NaN}', r"data.jsonl:2: field 'timestamp' must be a finite"),
    ('{"text": 5}', r"data.jsonl:2: field 'text' has the wrong type \(5\)"),
    ('{"text": "\\ud800"}', r"data.jsonl:2: contains an unpaired surrogate"),
    ('{"text": "x", "extra": []}', r"data.jsonl:2: field 'extra' must be an object"),
    ('{"text": "x", "extra": {"n": -1180591620717411303424}}',
     r"data.jsonl:2: field 'extra' holds an integer outside the 64-bit range"),
    ('["x"]', r"data.jsonl:2: expected a JSON object per line"),
])  # fmt: skip
def test_single_turn_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, ['{"text": "ok"}', line])
    with pytest.raises(ConfigError, match=message):
        SingleTurnLoader(UserConfig(input_file=path), TOKENIZER).load()


def test_mooncake_prompts_share_prefix_blocks_by_hash_id(tmp_path: Path) -> None:
    path = write(tmp_path, [
        json.dumps({"timestamp": 0, "input_length": BLOCK_SIZE + 10, "output_length": 4,
                    "hash_ids": [7, 8]}),
        json.dumps({"timestamp": 100, "input_length": BLOCK_SIZE + 10, "output_length": 4,
                    "hash_ids": [7, 9]}),
    ])
    first, second = MooncakeTraceLoader(UserConfig(input_file=path), TOKENIZER).load()
    assert first.input_tokens == second.input_tokens == BLOCK_SIZE + 10
    shared = first.text.split()[:BLOCK_SIZE]
    assert shared == second.text.split()[:BLOCK_SIZE]
    assert first.text != second.text
    assert (first.timestamp_ms, second.timestamp_ms) == (0, 100)


@pytest.mark.parametrize(("line", "message"), [
    ('{"timestamp": 1, "input_length": "long"}', r"field 'input_length' must be an integer"),
    ('{"timestamp": 1, "input_length": 3, "output_length": "12"}',
     r"field 'output_length' must be an integer \('12'\)"),
    ('{"timestamp": 1, "input_length": 3, "output_length": -3}',
     r"field 'output_length' must be between 1 and \d+ \(got -3\)"),
    ('{"timestamp": 1, "input_length": 3, "output_length": 2.5}',
     r"field 'output_length' must be an integer"),
    ('{"timestamp": "0", "input_length": 3}', r"field 'timestamp' must be a number"),
    ('{"timestamp": 1}', r"missing field 'input_length'"),
    ('{"input_length": 3, "hash_ids": [-1]}', r"field 'hash_ids' must be a list of non-neg"),
    ('{"input_length": 3, "hash_ids": 7}', r"field 'hash_ids' must be a list"),
    ('{"input_length": 99999999999}', r"field 'input_length' must be between 1 and"),
    ('"a string"', r"expected a JSON object per line"),
])  # fmt: skip
def test_mooncake_errors_name_file_line_and_field(tmp_path: Path, line: str,
                                                  message: str) -> None:
    path = write(tmp_path, ['{"timestamp": 0, "input_length": 3}', line])
    with pytest.raises(ConfigError, match=r"/data.jsonl:2: " + message):
        MooncakeTraceLoader(UserConfig(input_file=path), TOKENIZER).load()


def test_bad_utf8_is_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(ConfigError, match=r"data.jsonl:2: not valid UTF-8"):
        SingleTurnLoader(UserConfig(input_file=str(path)), TOKENIZER).load()


def test_a_byte_order_mark_on_the_first_line_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "ok"}\n')
    assert SingleTurnLoader(UserConfig(input_file=str(path)), TOKENIZER).load()[0].text == "ok"


def test_errors_show_the_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, ['{"nope": 1}'])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"^{tmp_path}/data.jsonl:1: "):
        SingleTurnLoader(UserConfig(input_file="data.jsonl"), TOKENIZER).load()


def test_a_missing_input_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"input_file: .*nope.jsonl does not exist"):
        SingleTurnLoader(UserConfig(input_file=str(tmp_path / "nope.jsonl")), TOKENIZER).load()


def test_a_tokenizer_path_needs_the_optional_package_or_says_how(tmp_path: Path) -> None:
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pytest-aiperf\[tokenizers\]"):
            make_tokenizer(str(tmp_path))
    else:
        with pytest.raises(ConfigError, match="does not exist"):
            make_tokenizer(str(tmp_path / "missing.json"))
