"""The netns Ray cluster harness (tests/harness/ray_cluster.py): real nodes, real processes.

The session's two-node cluster serves the read-only checks; the two tear-down checks start
clusters of their own (one node each, about 4 s), since they end them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from aiperf.common.process import libc
from tests.harness.ray_cluster import RayCluster, host_listeners, parse_ss
from tests.integration.ray.conftest import require_netns_ray

REPO = Path(__file__).resolve().parents[3]

# One task pinned to each node; each reports the node it ran on as Ray's worker sees it.
_PER_NODE_SCRIPT = """
import json, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=1)
def where():
    import os
    return ray.util.get_node_ip_address(), os.getpid()

nodes = [n for n in ray.nodes() if n["Alive"]]
refs = [where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            n["NodeID"], soft=False)).remote() for n in nodes]
print(json.dumps({n["NodeManagerAddress"]: ray.get(r) for n, r in zip(nodes, refs)}))
"""


def _snapshot(pids: list[int]) -> dict[int, float]:
    """pid -> create time, so a pid reused by an unrelated process is not mistaken for ours."""
    seen = {}
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            seen[pid] = psutil.Process(pid).create_time()
    return seen


def _still_there(snapshot: dict[int, float]) -> list[str]:
    """Processes of the snapshot that exist in any state: a zombie counts (nobody reaped it)."""
    left = []
    for pid, created in snapshot.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created:
                left.append(f"{pid} {proc.status()} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return left


def _netns_exists(name: str) -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10, check=True).stdout
    return any(line.split()[0] == name for line in listed.splitlines() if line.strip())


def test_nodes_are_alive_distinct_and_run_work(ray_cluster: RayCluster) -> None:
    nodes = ray_cluster.nodes()
    assert sorted(n.ip for n in nodes) == ["127.0.0.1", "127.0.0.2"]
    assert len({n.node_id for n in nodes}) == 2
    assert all(n.cpus == 2 for n in nodes)

    out = ray_cluster.run([sys.executable, "-c", _PER_NODE_SCRIPT], timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    ran = json.loads(out.stdout.strip().splitlines()[-1])
    # Each task ran on the node it was pinned to, in a worker process of that node.
    assert {ip: seen_ip for ip, (seen_ip, _) in ran.items()} == {
        "127.0.0.1": "127.0.0.1", "127.0.0.2": "127.0.0.2"}
    for ip, (_, pid) in ran.items():
        assert ray_cluster.node_pids(ip), ip
        assert pid != os.getpid()


def test_the_token_is_required_to_join(ray_cluster: RayCluster) -> None:
    # A driver with another token is refused: the cluster is not open to whoever reaches it.
    bad = ray_cluster.temp_dir / "wrong_token"  # type: ignore[operator]
    bad.write_text("0" * 64)
    bad.chmod(0o600)
    out = ray_cluster.run(
        [sys.executable, "-c", "import ray; ray.init(logging_level='ERROR'); print(ray.nodes())"],
        # Ray retries a refused connection 20 times a second apart; twice tells as much.
        env={"RAY_AUTH_TOKEN_PATH": str(bad), "RAY_NUM_REDIS_GET_RETRIES": "2"}, timeout=60)
    assert out.returncode != 0
    assert "127.0.0.2" not in out.stdout
    assert "InvalidAuthToken" in out.stderr
    # ... and the token itself appears in none of the cluster's environment or reprs.
    token = (ray_cluster.temp_dir / "auth_token").read_text()  # type: ignore[operator]
    assert token not in repr(ray_cluster)
    assert token not in json.dumps(ray_cluster.env)


def test_nothing_of_ray_listens_in_the_host_namespace(ray_cluster: RayCluster) -> None:
    inside = ray_cluster.listeners()
    # The positive control: Ray does listen, and some raylet sockets take every interface,
    # which is exactly why the cluster lives in a namespace of its own.
    assert any(item.port == 6379 and item.process == "gcs_server" for item in inside)
    assert any(item.process == "raylet" and item.address in ("*", "0.0.0.0") for item in inside)

    cluster_pids = set(ray_cluster.pids())
    assert cluster_pids
    before = set(ray_cluster.host_listeners_before)
    now = host_listeners()
    added = [item for item in now if item not in before]
    # Other tests on this machine may open listeners meanwhile: none of them is Ray's.
    assert [item for item in now if cluster_pids & set(item.pids)] == []
    assert [item for item in added if item.port == 6379] == []
    assert [item for item in added if item.process in {"gcs_server", "raylet"}
            or item.process.startswith("ray::")] == []


def test_node_pids_name_one_node(ray_cluster: RayCluster) -> None:
    head, worker = ray_cluster.node_pids("127.0.0.1"), ray_cluster.node_pids("127.0.0.2")
    assert head and worker and not set(head) & set(worker)
    names = {psutil.Process(pid).name() for pid in worker}
    assert "raylet" in names
    assert "gcs_server" not in {psutil.Process(pid).name() for pid in head}
    assert set(head) | set(worker) <= set(ray_cluster.pids())
    assert ray_cluster.node_pids("127.0.0.9") == []


def test_parse_ss() -> None:
    rows = parse_ss(
        'LISTEN 0 4096 [::ffff:127.0.0.1]:6379 *:* users:(("gcs_server",pid=9873,fd=44))\n'
        "LISTEN 0 128 127.0.0.2:42761 0.0.0.0:*\n"
        'LISTEN 0 4096 *:35741 *:* users:(("raylet",pid=10109,fd=40),("raylet",pid=7,fd=3))\n')
    assert [(r.address, r.port, r.process, r.pids) for r in rows] == [
        ("::ffff:127.0.0.1", 6379, "gcs_server", (9873,)),
        ("127.0.0.2", 42761, "", ()),
        ("*", 35741, "raylet", (7, 10109)),
    ]


def test_stop_leaves_nothing_after_a_killed_and_a_frozen_node() -> None:
    """What the Ray backend's tests do to nodes (SIGKILL, SIGSTOP) leaves no zombie and
    does not hold up the tear-down; a driver still running at stop is killed and reaped."""
    require_netns_ray()
    cluster = RayCluster(nodes=2).start()
    try:
        # A driver still running at stop, holding an actor (a worker process of a node).
        driver = cluster.popen(
            [sys.executable, "-c",
             "import ray, time\nray.init(logging_level='ERROR')\n"
             "@ray.remote\nclass A:\n    def pid(self):\n        import os; return os.getpid()\n"
             "a = A.remote(); print(ray.get(a.pid.remote()), flush=True); time.sleep(600)"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert driver.stdout is not None
        actor_pid = int(driver.stdout.readline())
        pids = [*cluster.pids(), driver.pid, cluster.keeper_pid]
        assert actor_pid in pids
        snapshot = _snapshot([pid for pid in pids if pid is not None])
        netns, temp_dir = cluster.netns, cluster.temp_dir
        assert temp_dir is not None and temp_dir.exists()

        # The worker node dies: its raylet is SIGKILLed, and the processes it leaves
        # orphaned (agents, workers) are reaped by the keeper, not left as zombies.
        killed = cluster.node_pids("127.0.0.2")
        assert killed
        killed_snapshot = _snapshot(killed)
        os.kill(killed[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _still_there(killed_snapshot) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _still_there(killed_snapshot) == []
        # The head node freezes.
        for pid in cluster.node_pids("127.0.0.1"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
    finally:
        left = cluster.stop()
    assert left == []
    assert _still_there(snapshot) == []
    assert not _netns_exists(netns)
    assert not temp_dir.exists()
    assert driver.returncode is not None
    assert cluster.stop() == []  # idempotent


_INTERRUPTED_SCRIPT = """
import json, sys, time
sys.path.insert(0, {repo!r})
from tests.harness.ray_cluster import RayCluster
cluster = RayCluster(nodes=1).start()
print(json.dumps({{"netns": cluster.netns, "temp_dir": str(cluster.temp_dir),
                  "pids": cluster.pids(), "keeper": cluster.keeper_pid}}), flush=True)
time.sleep(600)
"""


@contextlib.contextmanager
def _subreaper() -> Iterator[None]:
    """Make this process adopt its orphaned descendants for a while, so the test can reap
    the keeper of a SIGKILLed child instead of leaving it a zombie of init."""
    libc().prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    try:
        yield
    finally:
        libc().prctl(36, 0, 0, 0, 0)


def test_an_interrupted_session_leaves_nothing() -> None:
    """The test process is SIGKILLed with its cluster up: no finalizer runs there, and the
    keeper, seeing its stdin close, tears the cluster down by itself."""
    require_netns_ray()
    with _subreaper():
        child = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_SCRIPT.format(repo=str(REPO))],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line, "the child could not start its cluster"
            started = json.loads(line)
            snapshot = _snapshot(started["pids"])
            assert snapshot
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        keeper = started["keeper"]
        deadline = time.monotonic() + 60
        reaped = False
        while time.monotonic() < deadline and not reaped:
            with contextlib.suppress(ChildProcessError):
                reaped = os.waitpid(keeper, os.WNOHANG)[0] == keeper
            time.sleep(0.1)
    assert reaped, "the keeper did not finish its tear-down within 60 s"
    assert _still_there(snapshot) == []
    assert not _netns_exists(started["netns"])
    assert not Path(started["temp_dir"]).exists()


def test_missing_prerequisites_skip_locally_and_fail_under_ci(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.integration.ray.conftest as ray_conftest

    monkeypatch.setattr(ray_conftest, "prerequisites_missing",
                        lambda: "a netns Ray cluster needs root (ip netns add)")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_netns_ray()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"CI must run the Ray tests, but .*root"):
        require_netns_ray()
