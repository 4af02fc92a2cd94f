"""Property: whatever a JSONL dataset file holds, a loader returns a dataset that the mesh
can ship (``write_dataset``) or raises a ``ConfigError`` naming file:line. Never anything
else: any other exception would reach the host as a crashed service."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.dataset.base import DatasetLoader
from aiperf.dataset.models import read_dataset, write_dataset
from aiperf.dataset.mooncake import MooncakeTraceLoader
from aiperf.dataset.single_turn import SingleTurnLoader
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.errors import ConfigError

# Mostly small numbers (a 1e6-token prompt is valid, and slow to generate), plus the edges.
numbers = (st.integers(-5, 3000) | st.sampled_from([0, 10**7, 2**63, -(2**70)])
           | st.floats(allow_nan=True, allow_infinity=True))
scalars = st.none() | st.booleans() | numbers | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
single_turn_rows = st.fixed_dictionaries(
    {}, optional={"text": st.text(max_size=30) | values, "output_length": numbers | values,
                  "timestamp": numbers | values, "extra": values,
                  "other": values})
mooncake_rows = st.fixed_dictionaries(
    {}, optional={"input_length": numbers | values, "output_length": numbers | values,
                  "timestamp": numbers | values,
                  "hash_ids": st.lists(st.integers(-2, 50) | values, max_size=4) | values})


def encode_line(row: Any) -> bytes:
    return json.dumps(row, allow_nan=True).encode()


garbage_lines = st.binary(max_size=30) | st.sampled_from(
    [b"{", b"[1, 2]", b'"text"', b"null", b"\xff\xfe", b'{"text": "\\udc00"}', b"   ",
     b"[" * 5000 + b"]" * 5000, b'{"input_length": 1' + b"0" * 5000 + b"}"])


def check(loader_class: type[DatasetLoader], lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        config = UserConfig(input_file=str(path))
        try:
            turns = loader_class(config, BuiltinTokenizer()).load()
        except ConfigError as exc:
            message = str(exc)
            assert str(path) in message
            assert re.search(rf"{re.escape(str(path))}:\d+: ", message) or message.endswith(
                ": no entries"), message
            return
        assert turns
        for turn in turns:
            assert isinstance(turn.text, str) and turn.input_tokens >= 0
            assert turn.output_length is None or turn.output_length >= 1
        shipped = Path(tmp) / "dataset.msgpack"
        write_dataset(shipped, turns)  # what the dataset manager does next
        assert len(read_dataset(shipped)) == len(turns)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(single_turn_rows.map(encode_line) | garbage_lines, max_size=5))
def test_single_turn_rows_load_or_name_file_and_line(lines: list[bytes]) -> None:
    check(SingleTurnLoader, lines)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mooncake_rows.map(encode_line) | garbage_lines, max_size=5))
def test_mooncake_rows_load_or_name_file_and_line(lines: list[bytes]) -> None:
    check(MooncakeTraceLoader, lines)
