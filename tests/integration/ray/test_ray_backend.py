"""The Ray backend on a real two-node cluster (nodes 127.0.0.1 and 127.0.0.2 in a private
network namespace): merged counts, agreement with a local mesh, a killed actor, a frozen
node, peers with the wrong keys, and nothing left running or listening afterwards.

Every mesh here has a driver program inside the namespace as its host
(``tests/integration/ray/drivers.py``); the checks of processes and listeners are made
from this process, from outside the mesh.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from tests.harness.ray_cluster import Listener, RayCluster
from tests.integration.ray.drivers import (
    INTRUDER_OTHER_CLIENT,
    INTRUDER_OTHER_KEYS,
    MOCK,
    Driver,
    remote_service_pids,
)

REQUESTS = 200
NODES = {"127.0.0.1", "127.0.0.2"}
# What the mock server is configured to take (the drivers ask for osl = its token count).
CONFIGURED_MS = {
    "time_to_first_token": MOCK["ttft_ms"],
    "inter_token_latency": MOCK["itl_ms"],
    "request_latency": MOCK["ttft_ms"] + (MOCK["tokens"] - 1) * MOCK["itl_ms"],
}
_LOCATION = re.compile(r"node (?P<node>\S+), host \S+, pid (?P<pid>\d+), Ray actor [0-9a-f]+")


def _where(location: str) -> tuple[str, int]:
    match = _LOCATION.fullmatch(location)
    assert match, f"a location names node, host, pid and Ray actor: {location!r}"
    return match["node"], int(match["pid"])


def _wait_for_no_actors(cluster: RayCluster, timeout: float) -> tuple[list[int], float]:
    """Poll until no ``ray::RemoteService`` is left in the namespace; what is left at the
    deadline, and how long it took."""
    began = time.monotonic()
    while True:
        left = remote_service_pids(cluster.pids())
        if not left or time.monotonic() - began > timeout:
            return left, time.monotonic() - began
        time.sleep(0.1)


def _tree(pid: int) -> set[int]:
    try:
        proc = psutil.Process(pid)
        return {pid, *(child.pid for child in proc.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _within(measured: float, reference: float) -> bool:
    """Noise on a 2-core box: 1.5 ms or 10 %, whichever is larger."""
    return abs(measured - reference) <= max(1.5, 0.1 * reference)


# ------------------------------------------------------------------ one mesh, many checks


@pytest.fixture(scope="module")
def profiled(ray_cluster: RayCluster) -> Iterator[dict[str, Any]]:
    """One ``profile`` driver's whole life: a local and a ray run of one profile, a run with
    intruders, then what listens while the mesh is up and what is left once it is down."""
    driver = Driver(ray_cluster, "profile", address=ray_cluster.address, requests=REQUESTS)
    try:
        seen: dict[str, Any] = {"compared": driver.expect("compared", 120),
                                "intruded": driver.expect("intruded", 60),
                                "up": driver.expect("up", 30)}
        seen["listeners_up"] = ray_cluster.listeners()
        seen["actors_up"] = remote_service_pids(ray_cluster.pids())
        seen["controller_tree"] = _tree(seen["up"]["controller_pid"])
        driver.say("shutdown")
        driver.expect("down", 60)
        seen["actors_left"], seen["actors_gone_s"] = _wait_for_no_actors(ray_cluster, 15)
        seen["listeners_down"] = ray_cluster.listeners()
        seen["controller_alive"] = _alive(seen["up"]["controller_pid"])
        driver.say("exit")
        assert driver.finish() == 0, driver.tail()
        yield seen
    finally:
        driver.finish()


def test_workers_on_two_nodes_merge_into_exact_counts(profiled: dict[str, Any]) -> None:
    compared = profiled["compared"]
    locations = compared["locations"]
    assert set(locations) == {"worker_0", "worker_1"}
    assert {_where(where)[0] for where in locations.values()} == NODES, locations
    ray = compared["ray"]
    assert ray["request_count"] == REQUESTS and ray["records"] == REQUESTS, ray
    assert ray["error_count"] == 0, ray["errors"]
    assert ray["invariant_ok"], ray
    # Both workers' records are in the one merged table, none from anywhere else.
    assert set(ray["workers"]) == set(locations), ray["workers"]
    assert all(count > 0 for count in ray["workers"].values()), ray["workers"]
    assert sum(ray["workers"].values()) == REQUESTS
    offsets = ray["clock_offsets"]
    assert set(offsets) == set(locations), offsets
    for worker, estimate in offsets.items():
        assert estimate["samples"] >= 1, (worker, estimate)
        assert 0 <= estimate["uncertainty_ns"] < 5_000_000, (worker, estimate)
        # One machine: the clocks are the same clock, so the estimate is within its own
        # uncertainty of zero (plus a little for the asymmetry of a busy box's round trips).
        assert abs(estimate["offset_ns"]) <= estimate["uncertainty_ns"] + 1_000_000, estimate


def test_metrics_match_a_local_mesh_and_the_mock(profiled: dict[str, Any]) -> None:
    local, ray = profiled["compared"]["local"], profiled["compared"]["ray"]
    assert local["request_count"] == REQUESTS and local["error_count"] == 0, local
    assert local["clock_offsets"] == {}, "a local mesh shares one clock: no offsets"
    for tag, configured in CONFIGURED_MS.items():
        on_ray, on_local = ray["p50"][tag], local["p50"][tag]
        assert _within(on_ray, on_local), (tag, on_ray, on_local)
        assert _within(on_ray, configured), (tag, on_ray, configured)
        assert _within(on_local, configured), (tag, on_local, configured)


def test_peers_with_wrong_keys_are_refused_logged_and_change_nothing(
    profiled: dict[str, Any],
) -> None:
    intruded = profiled["intruded"]
    assert "error" not in intruded, intruded["error"]
    refusals = intruded["refusals"]
    # Another mesh's keys fail the CURVE handshake itself; this mesh's (public) server key
    # with a client key of its own is refused by the gatekeeper. Each is named by address.
    assert any("handshake does not decrypt" in line
               for line in refusals[INTRUDER_OTHER_KEYS]), refusals
    assert any("client key" in line for line in refusals[INTRUDER_OTHER_CLIENT]), refusals
    assert intruded["refused_while_running"], "the refusals came after the run had ended"
    result = intruded["result"]
    assert result["request_count"] == 2 * REQUESTS and result["records"] == 2 * REQUESTS
    assert result["error_count"] == 0 and result["invariant_ok"], result
    # No record from the intruders' would-be worker: only the mesh's two.
    assert set(result["workers"]) == {"worker_0", "worker_1"}, result["workers"]


def _on(listeners: list[Listener], ports: set[int]) -> list[Listener]:
    return [listener for listener in listeners if listener.port in ports]


def test_nothing_listens_wide_and_nothing_is_left_after_shutdown(
    profiled: dict[str, Any],
) -> None:
    up = profiled["up"]
    ports = set(up["ports"])
    assert up["tcp_host"] == "127.0.0.1"  # the cluster's interface: the route to the head
    # While up: every one of the mesh's addresses listens, on 127.0.0.1 alone.
    bound = _on(profiled["listeners_up"], ports)
    assert {listener.port for listener in bound} == ports, (ports, bound)
    assert {listener.address for listener in bound} == {"127.0.0.1"}, bound
    # Nothing the controller or its services opened listens on every interface (Ray's
    # own client in the controller listens too: on the loopback, as asked).
    tree = profiled["controller_tree"]
    wide = [listener for listener in profiled["listeners_up"]
            if set(listener.pids) & tree
            and listener.address not in {"127.0.0.1", "::ffff:127.0.0.1"}]
    assert wide == [], wide
    assert len(profiled["actors_up"]) == 2, "the check must see the actors while they run"
    # Once down: no actor on any node, no listener of the mesh, no controller.
    assert profiled["actors_left"] == [], profiled["actors_left"]
    assert _on(profiled["listeners_down"], ports) == [], profiled["listeners_down"]
    assert not profiled["controller_alive"]


# ------------------------------------------------------------------ breaking a running mesh


def _held(cluster: RayCluster) -> tuple[Driver, dict[str, Any]]:
    driver = Driver(cluster, "hold", address=cluster.address)
    try:
        running = driver.expect("running", 90)
        assert running["working"], "the duration run never produced a record"
    except BaseException:
        driver.finish()
        raise
    return driver, running


def _worker_on(locations: dict[str, str], node: str) -> tuple[str, int]:
    for worker, where in locations.items():
        if _where(where)[0] == node:
            return worker, _where(where)[1]
    raise AssertionError(f"no worker on node {node}: {locations}")


def test_a_killed_actor_fails_the_run_within_2s_naming_it(ray_cluster: RayCluster) -> None:
    driver, running = _held(ray_cluster)
    try:
        worker, pid = _worker_on(running["locations"], "127.0.0.2")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        ended = driver.expect("ended", 30)
        took = time.monotonic() - killed
        print(f"SIGKILL of {worker}'s actor -> run failed in {took:.3f}s")
        assert "error" in ended, f"the run went on without {worker}: {ended}"
        assert took < 2.0, f"{took:.2f}s from SIGKILL to the run's failure: {ended}"
        message = ended["error"]
        assert ended["type"] == "ServiceFailedError", ended
        assert f"remote service {worker} (node 127.0.0.2" in message, message
        assert "Ray actor" in message and "died" in message, message
        driver.expect("closed", 60)
        # The other worker's actor goes with the failed mesh too.
        left, _ = _wait_for_no_actors(ray_cluster, 15)
        assert left == [], left
    finally:
        driver.finish()


def test_a_frozen_node_fails_the_run_within_10s_and_the_cluster_recovers(
    ray_cluster: RayCluster,
) -> None:
    driver, running = _held(ray_cluster)
    try:
        worker, pid = _worker_on(running["locations"], "127.0.0.2")
        frozen = ray_cluster.node_pids("127.0.0.2")
        assert pid in frozen, (pid, frozen)
        try:
            for each in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(each, signal.SIGSTOP)
            stopped = time.monotonic()
            ended = driver.expect("ended", 30)
            took = time.monotonic() - stopped
        finally:
            # Thawed at once, whatever happened: the next tests share this cluster.
            for each in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(each, signal.SIGCONT)
        print(f"SIGSTOP of node 127.0.0.2 -> run failed in {took:.3f}s")
        assert "error" in ended, f"the run went on without {worker}: {ended}"
        assert took < 10.0, f"{took:.2f}s from SIGSTOP to the run's failure: {ended}"
        message = ended["error"]
        assert f"remote service {worker} (node 127.0.0.2" in message, message
        assert "silent" in message, message
        began = time.monotonic()
        driver.expect("closed", 60)
        print(f"frozen mesh closed in {time.monotonic() - began:.2f}s")
        began = time.monotonic()
        # The same cluster serves a fresh mesh, with a worker on the thawed node again.
        driver.say("again")
        again = driver.expect("again", 120)
        print(f"a fresh mesh ran 50 requests in {time.monotonic() - began:.2f}s "
              f"(ready in {again['ready_s']:.2f}s)")
        assert {_where(where)[0] for where in again["locations"].values()} == NODES, again
        assert again["request_count"] == 50 and again["error_count"] == 0, again
        assert again["invariant_ok"] and len(again["workers"]) == 2, again
        driver.say("exit")
        assert driver.finish() == 0, driver.tail()
    finally:
        driver.finish()


def test_the_actors_die_with_their_driver(ray_cluster: RayCluster) -> None:
    driver, running = _held(ray_cluster)
    try:
        actors = remote_service_pids(ray_cluster.pids())
        assert {pid for _, pid in (_where(w) for w in running["locations"].values())} \
            <= set(actors), (actors, running["locations"])
        os.kill(driver.pid, signal.SIGKILL)
        driver.proc.wait(10)
        left, took = _wait_for_no_actors(ray_cluster, 30)
        print(f"SIGKILL of the driver -> no actor left after {took:.2f}s")
        assert left == [], f"actors {left} outlived their driver by {took:.1f}s"
        deadline = time.monotonic() + 10
        while _alive(running["controller_pid"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(running["controller_pid"]), "the controller outlived its host"
    finally:
        driver.finish()
