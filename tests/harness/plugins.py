"""``mock_plugin`` for the project's own tests: the kit's, so there is one implementation."""

from pytest_aiperf.kit import mock_plugin

__all__ = ["mock_plugin"]
