"""A broken plugin fails the contract with the clause and a fix."""

from __future__ import annotations

import pytest

BROKEN = '''
from aiperf.endpoints.base import BaseEndpoint, ParsedResponse
from pytest_aiperf.kit import EndpointContract, register_plugin


class ForgetfulEndpoint(BaseEndpoint):
    """Sends no model and no output length, and accepts anything as a success."""

    def payload(self, turn):
        return {"messages": [{"role": "user", "content": turn.text}]}

    def parse_body(self, body):
        return ParsedResponse(content="x")

    def parse_event(self, data):
        return ParsedResponse(content="x")


register_plugin("endpoint", "forgetful", ForgetfulEndpoint,
                metadata={"endpoint_path": "/v1/chat/completions"})


class TestForgetful(EndpointContract):
    endpoint = "forgetful"
'''


def test_breaches_name_the_clause_and_the_fix(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_forgetful=BROKEN)
    result = pytester.runpytest_inprocess("-k", "payloads or failures")
    result.stdout.fnmatch_lines([
        "*endpoint contract, clause 'payload': model 'contract-model' not in*",
        "*how to fix: put config.model in the body*",
        "*endpoint contract, clause 'errors': *produced a success record*",
    ])
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] >= 5
