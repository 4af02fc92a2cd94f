"""Whatever a client sends, the mock answers (an error status for nonsense) and never
raises: a bad request must not take the server down."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.http import ABORT, END, Reply, Request, StreamStart
from aiperf.mock_server.server import MockServer

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
_BODIES = st.one_of(
    st.binary(max_size=200),
    _JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "messages": _JSON, "prompt": _JSON, "input": _JSON, "stream": _JSON,
        "max_tokens": _JSON | st.integers(-10, 10**12), "max_completion_tokens": _JSON,
        "stream_options": _JSON,
    }).map(lambda v: json.dumps(v).encode()),
)
_PATHS = st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/embeddings",
                          "/health", "/nope"])
_SERVER = MockServer(MockServerConfig(tokens=3))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["POST", "GET", "PUT"]), _PATHS, _BODIES)
def test_any_request_gets_an_answer(method: str, path: str, body: bytes) -> None:
    steps = list(_SERVER.answer(Request(method, path, body)))
    assert steps, "no answer at all"
    first = steps[0] if not isinstance(steps[0], float) else steps[1]
    assert isinstance(first, Reply | StreamStart)
    if isinstance(first, Reply):
        assert 200 <= first.status < 600
    else:
        assert steps[-1] is END
    assert ABORT not in steps  # no fault configured


def test_more_output_tokens_than_any_context_is_a_400() -> None:
    steps = list(_SERVER.answer(Request("POST", "/v1/completions",
                                        b'{"prompt": "x", "max_tokens": 1000000000}')))
    assert isinstance(steps[0], Reply) and steps[0].status == 400
    assert b"above the mock's limit" in steps[0].body
