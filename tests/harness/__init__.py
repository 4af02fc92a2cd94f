"""Shared test helpers: plugin mocking, process checks, the mock server."""

from tests.harness.plugins import mock_plugin
from tests.harness.processes import descendants, wait_gone
from tests.harness.reference_servers import Behaviour, ReferenceServer

__all__ = ["Behaviour", "ReferenceServer", "descendants", "mock_plugin", "wait_gone"]
