"""Usage is decoded typed (fast) and read leniently when it does not fit: both reads must
give the same counts as the lenient reader alone, whatever the server put there."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.endpoints.base import MAX_TOKEN_COUNT, usage_counts
from aiperf.plugin import PluginType, plugins


def endpoint(name: str, streaming: bool):  # type: ignore[no-untyped-def]
    cls = plugins.get_class(PluginType.ENDPOINT, name)
    return cls(UserConfig(streaming=streaming), plugins.get_metadata(PluginType.ENDPOINT, name))


COUNTS = st.one_of(
    st.integers(min_value=-3, max_value=MAX_TOKEN_COUNT + 3),
    st.sampled_from([0, 1, MAX_TOKEN_COUNT - 1, MAX_TOKEN_COUNT, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
)
DETAILS = st.one_of(st.none(), st.integers(), st.text(max_size=3),
                    st.fixed_dictionaries({}, optional={"reasoning_tokens": COUNTS}))
USAGES = st.one_of(
    st.none(), st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2),
    st.fixed_dictionaries({}, optional={
        "prompt_tokens": COUNTS, "completion_tokens": COUNTS, "total_tokens": COUNTS,
        "completion_tokens_details": DETAILS}),
)


def expected(usage: Any) -> tuple[int | None, int | None, int | None]:
    # The lenient reader on the value as JSON gives it back (what a server's bytes say).
    return usage_counts(json.loads(json.dumps(usage)))


@given(usage=USAGES)
def test_a_whole_chat_body_reads_usage_as_the_lenient_reader_does(usage: Any) -> None:
    body = json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": usage}).encode()
    parsed = endpoint("chat", streaming=False).parse_body(body)
    assert parsed.content == "hi"
    assert (parsed.prompt_tokens, parsed.completion_tokens,
            parsed.reasoning_tokens) == expected(usage)


@given(usage=USAGES)
def test_a_stream_reads_usage_as_the_lenient_reader_does(usage: Any) -> None:
    events = [b'{"choices":[{"text":"a"}]}',
              json.dumps({"choices": [], "usage": usage}).encode()]
    parsed = endpoint("completions", streaming=True).parse_events(events)
    assert parsed[0].content == "a"
    last = parsed[1]
    assert (last.prompt_tokens, last.completion_tokens, last.reasoning_tokens) == \
        expected(usage)


@pytest.mark.parametrize("usage", [
    {"prompt_tokens": 3, "completion_tokens": 5,
     "completion_tokens_details": {"reasoning_tokens": 2}},
    {"prompt_tokens": "3", "completion_tokens": 5.0,
     "completion_tokens_details": {"reasoning_tokens": True}},
    {"prompt_tokens": -3, "completion_tokens": MAX_TOKEN_COUNT},
])  # fmt: skip
def test_typed_and_lenient_usages_give_the_documented_counts(usage: dict[str, Any]) -> None:
    body = json.dumps({"choices": [{"text": "x"}], "usage": usage}).encode()
    parsed = endpoint("completions", streaming=False).parse_body(body)
    counts = (parsed.prompt_tokens, parsed.completion_tokens, parsed.reasoning_tokens)
    if usage["prompt_tokens"] == 3:
        assert counts == (3, 5, 2)
    elif usage["prompt_tokens"] == "3":
        assert counts == (3, 5, None)  # a bool is not a count
    else:
        assert counts == (None, None, None)  # out of range
