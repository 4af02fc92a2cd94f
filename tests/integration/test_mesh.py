"""The mesh as real processes and sockets: lifecycle, isolation and failure behaviour."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aiperf.common.hooks import on_init
from aiperf.common.service import BaseComponentService
from aiperf.errors import ConfigError, MeshError, ServiceFailedError
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType
from tests.harness import descendants, mock_plugin, wait_gone

EXPECTED_SERVICES = {"dataset_manager", "timing_manager", "records_manager", "worker_0",
                     "worker_1", "record_processor_0"}


class ExplodingService(BaseComponentService):
    """Raises while initialising (used by the failure tests)."""

    @on_init
    async def _explode(self) -> None:
        raise RuntimeError("init exploded on purpose")


def test_the_mesh_starts_every_service_runs_twice_and_leaves_nothing_behind() -> None:
    mesh = Mesh(workers=2).start()
    run_dir = Path(mesh.service_config.run_dir)
    assert mesh.pid is not None
    pids = [mesh.pid, *descendants(mesh.pid)]
    try:
        assert set(mesh.services) == EXPECTED_SERVICES
        assert set(mesh.services.values()) <= set(pids)
        assert any(run_dir.glob("*.sock"))
        for _ in range(2):
            result = mesh.run(timing_strategy="noop")
            assert result.invariant["ok"] and result.request_count == 0
    finally:
        mesh.shutdown()
    assert wait_gone(pids) == []
    assert not run_dir.exists()


def test_two_meshes_at_once_do_not_collide() -> None:
    with Mesh(workers=1) as first, Mesh(workers=1) as second:
        assert first.service_config.run_dir != second.service_config.run_dir
        assert first.run(timing_strategy="noop").invariant["ok"]
        assert second.run(timing_strategy="noop").invariant["ok"]


def test_services_off_the_request_path_run_at_lower_priority() -> None:
    host = os.getpriority(os.PRIO_PROCESS, 0)
    with Mesh(workers=1, background_nice=7) as mesh:
        nice = {name: os.getpriority(os.PRIO_PROCESS, pid)
                for name, pid in mesh.services.items()}
    assert nice["record_processor_0"] == nice["records_manager"] == min(19, host + 7)
    assert nice["worker_0"] == nice["timing_manager"] == host


def test_the_tcp_backend_runs_a_profile() -> None:
    with MockServerProcess(tokens=4) as server, Mesh(workers=1, comm_backend="tcp") as mesh:
        assert mesh.service_config.address("credits").startswith("tcp://127.0.0.1:")
        result = mesh.run(url=server.url, concurrency=2, request_count=10)
        assert result.request_count == 10 and result.invariant["ok"]


def test_a_service_that_raises_during_init_fails_start_naming_it() -> None:
    with mock_plugin(PluginType.SERVICE, "exploding", ExplodingService,
                     {"auto_start": True, "required": True}):
        mesh = Mesh(workers=1, startup_timeout=10)
        started = time.monotonic()
        with pytest.raises(ServiceFailedError, match="exploding") as info:
            mesh.start()
    assert time.monotonic() - started < 10
    assert "init exploded on purpose" in str(info.value) + info.value.details
    assert not mesh.running


def test_a_configuration_error_inside_a_service_reaches_the_host_and_the_mesh_survives(
    tmp_path: Path,
) -> None:
    with Mesh(workers=1) as mesh:
        with pytest.raises(ConfigError, match="does not exist"):
            mesh.run(input_file=str(tmp_path / "missing.jsonl"))
        assert mesh.run(timing_strategy="noop").invariant["ok"]


def test_a_worker_killed_mid_run_fails_the_run_naming_it_and_the_mesh_stops() -> None:
    with MockServerProcess(ttft_ms=50, itl_ms=20, tokens=50) as server:
        mesh = Mesh(workers=2, shutdown_timeout=2).start()
        assert mesh.pid is not None
        pids = [mesh.pid, *descendants(mesh.pid)]
        victim = mesh.services["worker_0"]
        threading.Timer(1.0, os.kill, args=(victim, signal.SIGKILL)).start()
        started = time.monotonic()
        try:
            with pytest.raises(ServiceFailedError, match=r"worker_0 killed by SIGKILL"):
                mesh.run(url=server.url, streaming=True, concurrency=4, request_count=400)
            assert time.monotonic() - started < 15
            with pytest.raises(MeshError):
                mesh.run(timing_strategy="noop")
        finally:
            mesh.shutdown()
        assert wait_gone(pids) == []


def test_no_mesh_process_survives_a_sigkilled_host(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import json, sys, time
        from aiperf.mesh import Mesh
        from tests.harness.processes import descendants
        mesh = Mesh(workers=2).start()
        print(json.dumps([mesh.pid, *descendants(mesh.pid)]), flush=True)
        time.sleep(60)
    """)
    root = Path(__file__).parents[2]
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        assert host.stdout is not None
        pids = json.loads(host.stdout.readline())
        assert len(pids) == 7
        host.kill()
        host.wait(5)
        assert wait_gone(pids, timeout=5) == []
    finally:
        if host.poll() is None:
            host.kill()


@pytest.mark.asyncio
async def test_the_async_handle_starts_runs_and_stops() -> None:
    async with Mesh(workers=1) as mesh:
        result = await mesh.arun(timing_strategy="noop")
        assert result.invariant["ok"]
        assert mesh.running
    assert not mesh.running
