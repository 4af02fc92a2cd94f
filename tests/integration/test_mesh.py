"""The mesh as real processes and sockets: lifecycle, isolation and failure behaviour."""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiperf.common.config import UserConfig
from aiperf.common.hooks import on_init
from aiperf.common.service import BaseComponentService
from aiperf.errors import (
    ConfigError,
    MeshError,
    MeshTimeoutError,
    RunInterrupted,
    ServiceFailedError,
)
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from aiperf.plugin import PluginType, plugins
from aiperf.services.record_processor import RecordProcessor
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
    assert_none_survives_a_sigkilled_host(script, expected=7)


def assert_none_survives_a_sigkilled_host(script: str, expected: int) -> None:
    """Run ``script`` as a host that prints the pids it started (one JSON line), check they
    all run, SIGKILL the host and check every one of them is gone."""
    root = Path(__file__).parents[2]
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    try:
        assert host.stdout is not None
        pids = json.loads(host.stdout.readline())
        assert len(pids) == expected and wait_gone(pids, timeout=0) == pids  # all alive
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


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel completes the handshake) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(256)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("load", [{"concurrency": 4}, {"request_rate": 40}],
                         ids=["leases", "scheduled"])
def test_a_timed_out_run_is_cancelled_everywhere_and_the_next_runs_are_exact(
    load: dict, mock_server: MockServerProcess,
) -> None:
    with silent_server() as url, Mesh(workers=2, max_run_seconds=1.5) as mesh:
        started = time.monotonic()
        with pytest.raises(MeshTimeoutError, match=r"deadline of 1.5s; it was cancelled"):
            mesh.run(url=url, request_count=400, request_timeout_seconds=60, **load)
        assert time.monotonic() - started < 10
        assert mesh.running  # the mesh survives a timed-out run
        for _ in range(2):  # stale leases, credits, timers or records would show here
            result = mesh.run(url=mock_server.url, request_count=40, **load)
            assert result.invariant["ok"], result.invariant
            assert result.invariant["credits_issued"] == 40
            assert (result.request_count, result.error_count) == (40, 0)
            assert sorted(r["metadata"]["credit_id"] for r in result.records) == list(range(40))


def test_the_host_waits_on_the_controller_not_on_request_count_times_timeout() -> None:
    """A run whose old deadline was hours long still ends when the controller stops
    answering: the host's wait is the controller's heartbeat."""
    with silent_server() as url:
        mesh = Mesh(workers=1, command_timeout=3, heartbeat_interval=0.2,
                    shutdown_timeout=1).start()
        try:
            assert mesh.pid is not None
            threading.Timer(1.0, os.kill, args=(mesh.pid, signal.SIGSTOP)).start()
            started = time.monotonic()
            with pytest.raises(MeshTimeoutError, match="no heartbeat"):
                mesh.run(url=url, concurrency=1, request_count=1000,
                         request_timeout_seconds=600)
            assert time.monotonic() - started < 10
        finally:
            if mesh.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(mesh.pid, signal.SIGCONT)
            mesh.shutdown()


def test_a_request_rate_override_does_not_keep_the_derived_concurrency_of_one() -> None:
    with MockServerProcess(ttft_ms=150, tokens=2) as server, Mesh(workers=1) as mesh:
        base = UserConfig(url=server.url, streaming=True)
        assert base.resolved_concurrency() == 1
        result = mesh.run(base, request_rate=50, arrival_pattern="constant", request_count=10)
        assert result.invariant["ok"] and result.request_count == 10
        spans = [(r["metadata"]["request_start_ns"], r["metadata"]["request_end_ns"])
                 for r in result.records]
        overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
        # 20 ms apart, 150 ms each: about 7 at once; with a cap of one, never more than 1.
        assert overlap >= 3
        with pytest.raises(ConfigError, match="request_rate: Input should be greater than 0"):
            mesh.run(base, request_rate=0)


def _controller_outlives_its_launching_thread(mesh: Mesh) -> None:
    assert mesh.pid is not None
    time.sleep(0.5)  # a parent-death signal tied to the exited thread fires at once
    assert mesh.running, "the controller died with the thread that launched it"
    result = mesh.run(timing_strategy="noop")
    assert result.invariant["ok"]


def test_the_async_handle_survives_asyncio_run_shutting_its_executor_down() -> None:
    mesh = Mesh(workers=1)
    try:
        asyncio.run(mesh.astart())  # asyncio.run ends by joining its executor's threads
        _controller_outlives_its_launching_thread(mesh)

        async def run_again() -> bool:
            return (await mesh.arun(timing_strategy="noop")).invariant["ok"]

        assert asyncio.run(run_again())
    finally:
        mesh.shutdown()


@pytest.mark.asyncio
async def test_the_async_handle_survives_an_executor_thread_exiting_under_pytest_asyncio(
) -> None:
    mesh = Mesh(workers=1)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as executor:
            await asyncio.get_running_loop().run_in_executor(executor, mesh.start)
        # The executor's thread has exited.
        await asyncio.to_thread(_controller_outlives_its_launching_thread, mesh)
        assert (await mesh.arun(timing_strategy="noop")).invariant["ok"]
    finally:
        await mesh.ashutdown()


def test_the_mock_server_outlives_the_thread_that_started_it_but_not_its_host() -> None:
    server = MockServerProcess(tokens=2)
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join(20)
    try:
        time.sleep(0.5)
        assert server.pid is not None and wait_gone([server.pid], timeout=0) == [server.pid]
        with Mesh(workers=1) as mesh:
            assert mesh.run(url=server.url, request_count=3).request_count == 3
    finally:
        server.stop()


def test_mesh_log_lines_go_to_python_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiperf.mesh")
    with Mesh(workers=1, log_level="INFO") as mesh:
        mesh.run(timing_strategy="noop")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        "mesh ready" in r.getMessage() for r in caplog.records
    ):
        time.sleep(0.05)
    relayed = [r for r in caplog.records if r.name == "aiperf.mesh"]
    assert any(r.levelno == logging.INFO and r.getMessage().startswith("aiperf.controller: "
                                                                       "mesh ready")
               for r in relayed), [r.getMessage() for r in relayed]


def test_a_controller_that_crashes_names_its_traceback_in_the_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = {"service": {"bogus": {"class": "no_such_module:Service"}}}
    with pytest.raises(MeshError, match=r"controller exited with code 1 during start-up; its "
                                        r"last output:\n(.|\n)*PluginError: host: service.bogus"):
        Mesh(workers=1, runtime_plugins=broken).start()
    assert any(r.name == "aiperf.mesh" and "Traceback" in r.getMessage()
               for r in caplog.records)


def test_the_api_key_never_reaches_an_error_from_inside_the_mesh(tmp_path: Path) -> None:
    secret = "sk-never-in-an-error-7"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "x", "output_length": "12"}\n')
    with Mesh(workers=1) as mesh:
        with pytest.raises(ConfigError, match=r"bad.jsonl:2: field 'output_length'") as info:
            mesh.run(api_key=secret, url="http://user:pa55@127.0.0.1:9", input_file=str(bad))
        assert secret not in str(info.value) and "pa55" not in str(info.value)
        # What pytest -l prints: the locals of every frame, Mesh.run's included.
        frames = [f for f in traceback.TracebackException.from_exception(
            info.value, capture_locals=True).stack if "/aiperf/" in f.filename]
        assert [f.name for f in frames] == ["run"]
        assert frames[0].locals is not None and secret not in str(frames[0].locals)
        with pytest.raises(ConfigError) as info:
            mesh.run(api_key=secret, concurrency=0)  # refused by the host, before the mesh
        frames = traceback.TracebackException.from_exception(info.value, capture_locals=True)
        assert secret not in str([f.locals for f in frames.stack if "/aiperf/" in f.filename])
        # A model-level check failing on an override: pydantic's own text echoes every key.
        with pytest.raises(ConfigError) as info:
            mesh.run(UserConfig(api_key=secret), fixed_schedule=True)
        assert secret not in str(info.value)


def test_a_run_returns_as_soon_as_its_results_are_in() -> None:
    """The controller watches a run's deadlines on a heartbeat tick; the results must not
    wait for the tick (a no-op run on a warm mesh takes milliseconds)."""
    with Mesh(workers=1, heartbeat_interval=2.0) as mesh:
        mesh.run(timing_strategy="noop")  # warms caches
        trips = []
        for _ in range(3):
            started = time.monotonic()
            mesh.run(timing_strategy="noop")
            trips.append(time.monotonic() - started)
    assert min(trips) < 0.5, trips


def test_mesh_settings_are_validated_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"Mesh: workers: Input should be greater than or "
                                          r"equal to 1 \(got 0\)"):
        Mesh(workers=0)
    with pytest.raises(ConfigError, match=r"Mesh: unknown key 'wrkers'"):
        Mesh(wrkers=2)
    assert Mesh(workers=3, record_hwm=2).service_config.record_hwm == 2


def test_children_started_from_a_passing_thread_still_die_with_a_sigkilled_host() -> None:
    script = textwrap.dedent("""
        import json, threading, time
        from aiperf.mesh import Mesh
        from aiperf.mock_server import MockServerProcess
        from tests.harness.processes import descendants
        server, mesh = MockServerProcess(tokens=2), Mesh(workers=1)
        for start in (server.start, mesh.start):
            starter = threading.Thread(target=start)
            starter.start()
            starter.join()  # the launching thread is gone
        time.sleep(0.3)
        print(json.dumps([server.pid, mesh.pid, *descendants(mesh.pid)]), flush=True)
        time.sleep(60)
    """)
    assert_none_survives_a_sigkilled_host(script, expected=1 + 1 + 5)


@pytest.mark.parametrize("after_s", [0.05, 1.0], ids=["during-configure", "mid-run"])
def test_a_host_cancel_keeps_what_was_issued_and_the_mesh_goes_on(
    after_s: float, mock_server: MockServerProcess,
) -> None:
    with Mesh(workers=2) as mesh:
        mesh.run(timing_strategy="noop")  # started and warm: the timer hits the run
        timer = threading.Timer(after_s, _thread.interrupt_main)  # a Ctrl-C, in-process
        timer.start()
        try:
            with pytest.raises(RunInterrupted) as info:
                mesh.run(url=mock_server.url, streaming=True, concurrency=4, osl=4,
                         request_count=1_000_000, partial_on_interrupt=True)
        finally:
            timer.cancel()
        result = info.value.result
        assert result.was_cancelled and result.invariant["ok"], result.invariant
        issued = result.invariant["credits_issued"]
        assert issued < 1_000_000
        ids = [r["metadata"]["credit_id"] for r in result.records]
        assert len(ids) == len(set(ids)) == issued  # one record per issued credit
        assert result.request_count + result.error_count == issued
        assert mesh.running
        after = mesh.run(url=mock_server.url, concurrency=4, request_count=20)
        assert after.invariant["ok"] and (after.request_count, after.error_count) == (20, 0)


def test_a_host_cancel_while_every_session_thinks_reports_every_lease(
    mock_server: MockServerProcess,
) -> None:
    """At the cancel each slot's session waits out its think time, so no lease has a
    request in flight: reporting the first removed it from the worker's list, and the loop
    over that list skipped the second, which the timing manager then waited for until the
    run was lost (about 1 mid-run cancel in 7 before, every time here)."""
    with Mesh(workers=1) as mesh:
        mesh.run(timing_strategy="noop")
        timer = threading.Timer(1.0, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(RunInterrupted) as info:
                mesh.run(url=mock_server.url, concurrency=2, osl=2, conversation_num=1000,
                         conversation_turn_mean=3, conversation_turn_delay_mean=60_000,
                         partial_on_interrupt=True)
        finally:
            timer.cancel()
        result = info.value.result
        assert result.was_cancelled and result.invariant["ok"], result.invariant
        # Each slot sent its session's first turn, then thought: two requests were issued.
        assert result.invariant["credits_issued"] == 2
        assert result.request_count == 2 and result.error_count == 0
        assert {r["metadata"]["turn_index"] for r in result.records} == {0}
        after = mesh.run(url=mock_server.url, concurrency=2, request_count=10)
        assert after.invariant["ok"] and (after.request_count, after.error_count) == (10, 0)


class BlackHoleRecordProcessor(RecordProcessor):
    """Takes raw records and forwards none: no record ever reaches the records manager."""

    async def _process_loop(self) -> None:
        while True:
            await self._raw.recv()


def test_a_count_run_without_records_is_cancelled_by_the_stall_rule(
    mock_server: MockServerProcess,
) -> None:
    """Its old deadline was request count x request timeout (here 1000 x 1 s): the stall
    rule ends it after one request timeout plus the margin without a record."""
    with plugins.registered(PluginType.SERVICE, "record_processor", BlackHoleRecordProcessor), \
            Mesh(workers=1, result_timeout_margin=1.0) as mesh:
        started = time.monotonic()
        with pytest.raises(MeshTimeoutError, match=r"produced no record for 2.0s"):
            mesh.run(url=mock_server.url, concurrency=1, request_count=1000,
                     request_timeout_seconds=1)
        assert time.monotonic() - started < 10
        assert mesh.running
        assert mesh.run(timing_strategy="noop").invariant["ok"]
