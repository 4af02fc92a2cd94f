"""Property: whatever a multi_turn JSONL or ShareGPT JSON file holds, the loader returns
sessions the mesh can ship or raises a ``ConfigError`` naming the file (and, for JSONL, the
line). Never another exception: it would reach the host as a crashed service."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.dataset.base import DatasetLoader
from aiperf.dataset.models import read_dataset, session_layout, write_dataset
from aiperf.dataset.sessions import MultiTurnLoader, ShareGPTLoader
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.errors import ConfigError
from tests.unit.dataset.test_loaders_properties import encode_line, garbage_lines, numbers, values

texts = st.text(max_size=20) | st.sampled_from(["\ud800", "a\udc00b", "é"])
turn_rows = st.fixed_dictionaries({}, optional={
    "text": texts | values, "texts": st.lists(texts, max_size=2) | values,
    "delay": numbers | values, "output_length": numbers | values, "other": values})
session_rows = st.fixed_dictionaries({}, optional={
    "session_id": texts | values, "turns": st.lists(turn_rows | values, max_size=3) | values,
    "extra": values})
messages = st.fixed_dictionaries({}, optional={
    "from": st.sampled_from(["human", "gpt", "system", "user", "alien"]) | values,
    "value": texts | values})
conversations = st.lists(st.fixed_dictionaries({}, optional={
    "id": texts | values, "conversations": st.lists(messages | values, max_size=3) | values})
    | values, max_size=3)


def check(loader_class: type[DatasetLoader], content: bytes, by_line: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sessions.data"
        path.write_bytes(content)
        config = UserConfig(input_file=str(path))
        try:
            turns = loader_class(config, BuiltinTokenizer()).load()
        except ConfigError as exc:
            message = str(exc)
            assert str(path) in message, message
            if by_line:
                assert re.search(rf"{re.escape(str(path))}:\d+: ", message) or message.endswith(
                    ": no sessions"), message
            return
        assert turns and session_layout(turns) is not None
        for turn in turns:
            assert isinstance(turn.text, str) and turn.text and turn.delay_ms >= 0
        shipped = Path(tmp) / "dataset.msgpack"
        write_dataset(shipped, turns)  # what the dataset manager does next
        assert len(read_dataset(shipped)) == len(turns)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(session_rows.map(encode_line) | garbage_lines, max_size=4))
def test_multi_turn_rows_load_or_name_file_and_line(lines: list[bytes]) -> None:
    check(MultiTurnLoader, b"\n".join(lines) + b"\n", by_line=True)


def _json(data: Any) -> bytes:
    return json.dumps(data, allow_nan=True).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversations.map(_json) | values.map(_json) | st.binary(max_size=30))
@example(_json([{"conversations": [{"from": "human", "value": "a\ud800"}]}]))
def test_sharegpt_files_load_or_are_named(content: bytes) -> None:
    check(ShareGPTLoader, content, by_line=False)
