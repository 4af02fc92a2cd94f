"""The truth suite starts real processes: one reference server per case (shared by every path
and concurrency, started on first use) and one mesh per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiperf.mesh import Mesh
from tests.harness.reference_servers import Behaviour, ReferenceServer


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/truth/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


class ServerPool:
    """Reference servers by behaviour, each started once and stopped at the end."""

    def __init__(self) -> None:
        self._servers: dict[Behaviour, ReferenceServer] = {}

    def get(self, behaviour: Behaviour) -> ReferenceServer:
        server = self._servers.get(behaviour)
        if server is None:
            server = ReferenceServer(behaviour)
            server.start()
            self._servers[behaviour] = server
        return server

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()


@pytest.fixture(scope="session")
def reference_servers() -> Iterator[ServerPool]:
    pool = ServerPool()
    try:
        yield pool
    finally:
        pool.stop_all()


@pytest.fixture(scope="module")
def truth_mesh() -> Iterator[Mesh]:
    """One mesh for a module's runs, with the defaults a user gets."""
    with Mesh(command_timeout=15) as running:
        yield running
