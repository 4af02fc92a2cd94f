"""The built-in endpoints pass the contract the kit offers plugin authors."""

from __future__ import annotations

from pytest_aiperf.kit import EndpointContract


class TestChatContract(EndpointContract):
    endpoint = "chat"


class TestCompletionsContract(EndpointContract):
    endpoint = "completions"


class TestEmbeddingsContract(EndpointContract):
    endpoint = "embeddings"
