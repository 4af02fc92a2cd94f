"""The Ray cluster for the Ray backend's tests: two nodes (head 127.0.0.1, a worker node
127.0.0.2) in a private network namespace, started once per session (about 6 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.ci import skip_or_fail
from tests.harness.ray_cluster import RayCluster, prerequisites_missing


def require_netns_ray() -> None:
    """Skip when this machine cannot host a netns Ray cluster (not root, no ``ip``, no
    Ray), with the reason; under CI (env ``CI`` set) fail instead, so the Ray tests can
    never be skipped there unnoticed."""
    skip_or_fail(prerequisites_missing(), "the Ray tests")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    require_netns_ray()
    cluster = RayCluster(nodes=2).start()
    try:
        yield cluster
    finally:
        left = cluster.stop()
    assert left == [], f"processes of the Ray cluster survived its tear-down: {left}"
