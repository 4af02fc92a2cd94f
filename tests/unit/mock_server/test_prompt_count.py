"""The mock's prompt count (usage.prompt_tokens) is taken message by message, so that a
conversation's repeated messages are counted once; it must equal the built-in count of
the messages' contents joined by spaces, which is what a client's ISL is checked
against."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.mock_server.responders import ChatResponder, count_message_tokens

_contents = st.text(alphabet=st.sampled_from(list("ab1 _-.,!\n\t\u00e9\u4e2d")), max_size=30)
_messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                               "content": _contents}),
        st.fixed_dictionaries({"role": st.just("user")}),  # no content
        st.fixed_dictionaries({"role": st.just("user"),
                               "content": st.lists(st.fixed_dictionaries({"text": _contents}),
                                                   max_size=2)}),
        st.integers(),  # not a message at all
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(messages=_messages)
def test_counting_message_by_message_is_counting_the_joined_text(messages: list[Any]) -> None:
    joined = " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    assert count_message_tokens(messages) == BuiltinTokenizer().count(joined)


def test_a_conversation_s_usage_counts_every_message() -> None:
    plan = ChatResponder().parse({"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "hi, you!"},
        {"role": "user", "content": "again"},
    ]}, default_tokens=4)
    assert plan.prompt_tokens == 2 + 2 + 4 + 1
