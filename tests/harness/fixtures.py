"""Fixtures shared by the integration tests: a mock server and a mesh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess


@pytest.fixture(scope="module")
def mock_server() -> Iterator[MockServerProcess]:
    """A zero-latency mock server in its own process, shared by a module's tests."""
    with MockServerProcess(tokens=8) as server:
        yield server


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    """One mesh for a module's tests: they also prove that runs do not leak into each other."""
    with Mesh(workers=2, command_timeout=15) as running:
        yield running
