"""The built-in endpoints of other protocols than OpenAI's pass the plugin kit's contract,
each against the mock server's responder for its protocol (built in, so none is passed)."""

from __future__ import annotations

from pytest_aiperf.kit import EndpointContract


class TestRankingsContract(EndpointContract):
    endpoint = "rankings"


class TestCohereRankingsContract(EndpointContract):
    endpoint = "cohere-rankings"


class TestNIMRankingsContract(EndpointContract):
    endpoint = "nim-rankings"
