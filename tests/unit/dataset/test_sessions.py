"""Multi-turn datasets: synthetic sessions, multi_turn JSONL, ShareGPT, prefixes, layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.dataset.models import SessionLayout, Turn, session_layout
from aiperf.dataset.sessions import MultiTurnLoader, ShareGPTLoader, whole_session_leases
from aiperf.dataset.synthetic import SyntheticLoader
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.errors import ConfigError

TOKENIZER = BuiltinTokenizer()


def test_synthetic_sessions_have_the_asked_turns_delays_and_are_seeded() -> None:
    config = UserConfig(conversation_num=5, conversation_turn_mean=3, isl=10,
                        conversation_turn_delay_mean=40, conversation_turn_delay_ratio=0.5)
    turns = SyntheticLoader(config, TOKENIZER).load()
    assert len(turns) == 15
    assert [t.session for t in turns] == [s for s in range(5) for _ in range(3)]
    assert [t.turn_index for t in turns] == [0, 1, 2] * 5
    # No think time before a session's first turn; 40 ms x 0.5 before the others.
    assert {t.delay_ms for t in turns if t.turn_index == 0} == {0.0}
    assert {t.delay_ms for t in turns if t.turn_index} == {20.0}
    assert {t.input_tokens for t in turns} == {10}
    assert [t.text for t in SyntheticLoader(config, TOKENIZER).load()] == [t.text for t in turns]
    layout = session_layout(turns)
    assert layout is not None and layout.sessions == 5 and set(layout.lengths) == {3}


def test_synthetic_turn_counts_follow_mean_and_stddev() -> None:
    config = UserConfig(conversation_num=400, conversation_turn_mean=5,
                        conversation_turn_stddev=2, isl=2)
    layout = session_layout(SyntheticLoader(config, TOKENIZER).load())
    assert layout is not None and layout.sessions == 400
    lengths = layout.lengths
    assert min(lengths) >= 1 and abs(sum(lengths) / 400 - 5) < 0.4


def test_a_single_turn_dataset_has_no_layout() -> None:
    assert session_layout(SyntheticLoader(UserConfig(request_count=3), TOKENIZER).load()) is None


def test_prefixes_and_a_shared_system_prompt_count_in_the_input_length() -> None:
    config = UserConfig(isl=30, request_count=50, prompt_prefix_pool_size=3,
                        prompt_prefix_length=20, shared_system_prompt_length=7)
    turns = SyntheticLoader(config, TOKENIZER).load()
    assert {t.input_tokens for t in turns} == {30 + 20 + 7}
    assert {t.system_tokens for t in turns} == {7} and len({t.system for t in turns}) == 1
    # Three distinct 20-token prefixes open the prompts; the rest of a prompt is its own.
    prefixes = {" ".join(t.text.split()[:20]) for t in turns}
    assert len(prefixes) == 3
    plain = SyntheticLoader(UserConfig(isl=30, request_count=50), TOKENIZER).load()
    assert [" ".join(t.text.split()[20:]) for t in turns] == [t.text for t in plain]


def test_in_sessions_only_the_first_turn_has_a_prefix() -> None:
    config = UserConfig(isl=10, conversation_num=4, conversation_turn_mean=2,
                        prompt_prefix_pool_size=2, prompt_prefix_length=5)
    turns = SyntheticLoader(config, TOKENIZER).load()
    assert {t.input_tokens for t in turns if t.turn_index == 0} == {15}
    assert {t.input_tokens for t in turns if t.turn_index == 1} == {10}


def _write(tmp_path: Path, lines: list[object]) -> str:
    path = tmp_path / "sessions.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    return str(path)


def test_a_multi_turn_file_keeps_sessions_turns_and_delays(tmp_path: Path) -> None:
    file = _write(tmp_path, [
        {"session_id": "a", "turns": [{"text": "one two"}, {"text": "three", "delay": 250,
                                                            "output_length": 9}]},
        {"session_id": "b", "turns": [{"texts": ["x", "y"]}]}])
    config = UserConfig(input_file=file, custom_dataset_type="multi_turn", osl=4)
    turns = MultiTurnLoader(config, TOKENIZER).load()
    assert [(t.session_id, t.turn_index, t.text, t.delay_ms, t.output_length)
            for t in turns] == [("a", 0, "one two", 0.0, 4), ("a", 1, "three", 250.0, 9),
                                ("b", 0, "x y", 0.0, 4)]
    assert [t.input_tokens for t in turns] == [2, 1, 2]


@pytest.mark.parametrize(("line", "says"), [
    ({"session_id": "a"}, "'turns' must be a non-empty list"),
    ({"turns": [{"text": ""}]}, "'text' must be a non-empty string"),
    ({"turns": [{"text": "x", "delay": -1}]}, "'delay' must not be negative"),
    ({"turns": [{"text": "x", "delay": "soon"}]}, "'delay' must be a number"),
    ({"turns": [{"text": "x", "colour": 1}]}, "unknown field(s) ['colour']"),
    ({"turns": ["x"]}, "turns[0]: expected an object"),
    ({"turns": [{"text": "x"}], "user": 1}, "unknown field(s) ['user']"),
])  # fmt: skip
def test_a_bad_multi_turn_line_is_named_by_file_line_and_field(
        tmp_path: Path, line: object, says: str) -> None:
    file = _write(tmp_path, [{"turns": [{"text": "fine"}]}, line])
    config = UserConfig(input_file=file, custom_dataset_type="multi_turn")
    with pytest.raises(ConfigError) as error:
        MultiTurnLoader(config, TOKENIZER).load()
    assert "sessions.jsonl:2" in str(error.value) and says in str(error.value)


def test_sharegpt_takes_the_human_messages_as_turns(tmp_path: Path) -> None:
    path = tmp_path / "sg.json"
    path.write_text(json.dumps([
        {"id": "c1", "conversations": [{"from": "human", "value": "hi there"},
                                       {"from": "gpt", "value": "canned"},
                                       {"from": "human", "value": "more"}]},
        {"id": "c2", "conversations": [{"from": "gpt", "value": "nothing to send"}]},
        {"id": "c3", "conversations": [{"from": "user", "value": "again"}]}]))
    config = UserConfig(input_file=str(path), custom_dataset_type="sharegpt")
    turns = ShareGPTLoader(config, TOKENIZER).load()
    assert [(t.session_id, t.session, t.turn_index, t.text) for t in turns] == [
        ("c1", 0, 0, "hi there"), ("c1", 0, 1, "more"), ("c3", 1, 0, "again")]


@pytest.mark.parametrize(("content", "says"), [
    ("{}", "expected a JSON list"),
    ("[1]", "[0]: expected an object with a 'conversations' list"),
    ('[{"conversations": [{"from": "alien", "value": "x"}]}]', "unknown 'from' 'alien'"),
    ('[{"conversations": [{"from": "human"}]}]', "a string 'value'"),
    ("[", "not a ShareGPT JSON file"),
    ('[{"conversations": []}]', "no conversation with a human message"),
])  # fmt: skip
def test_a_bad_sharegpt_file_is_named(tmp_path: Path, content: str, says: str) -> None:
    path = tmp_path / "sg.json"
    path.write_text(content)
    config = UserConfig(input_file=str(path), custom_dataset_type="sharegpt")
    with pytest.raises(ConfigError) as error:
        ShareGPTLoader(config, TOKENIZER).load()
    assert "sg.json" in str(error.value) and says in str(error.value)


def test_only_a_session_count_alone_bounds_a_run_by_whole_sessions() -> None:
    assert whole_session_leases(UserConfig(conversation_num=3))
    assert not whole_session_leases(UserConfig(conversation_num=3, request_count=9))
    assert not whole_session_leases(UserConfig(conversation_num=3, benchmark_duration=2))
    assert not whole_session_leases(UserConfig())


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(0, 200),
       st.integers(1, 30))
def test_leases_of_whole_sessions_start_and_end_on_session_bounds(
        lengths: list[int], start: int, want: int) -> None:
    turns = [Turn("x", 1, session=s, turn_index=k)
             for s, n in enumerate(lengths) for k in range(n)]
    layout = SessionLayout(turns)
    first = layout.align_up(start)
    assert first >= start and first - start < max(lengths)
    assert turns[first % len(turns)].turn_index == 0
    count = layout.whole_sessions(first, want)
    assert count >= want and turns[(first + count) % len(turns)].turn_index == 0
    assert layout.ids_of_sessions(first, len(lengths)) == len(turns)
