"""The mock's responders for the other protocols read any JSON object a client may send:
a plan, or a 400 (``BadRequest``) saying what is wrong; never an exception of another kind,
which would cost the mock server the request."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.mock_server.responders import BadRequest, RequestPlan, Responder
from aiperf.mock_server.server import BUILTIN_RESPONDERS, MockServer

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
KEYS = ["query", "texts", "documents", "passages", "text", "input", "inputs", "parameters",
        "max_new_tokens", "max_output_tokens", "max_tokens", "prompt", "stream", "content"]
bodies = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


@pytest.mark.parametrize("responder", [cls() for cls in BUILTIN_RESPONDERS],
                         ids=lambda r: type(r).__name__)
@settings(max_examples=50, deadline=None)
@given(body=bodies)
def test_any_body_is_a_plan_or_a_bad_request(responder: Responder,
                                             body: dict[str, Any]) -> None:
    try:
        plan = responder.parse(body, 16)
    except BadRequest as exc:
        assert str(exc)
        return
    assert isinstance(plan, RequestPlan) and plan.output_tokens >= 0 and plan.prompt_tokens >= 0


def test_every_protocol_has_a_route_of_its_own() -> None:
    paths = [cls.path for cls in BUILTIN_RESPONDERS]
    assert len(set(paths)) == len(paths)
    assert set(MockServer().responders) == set(paths)
