"""Liveness of remote workers through the external backend (no Ray): the controller hears
each remote worker's ``ServiceHeartbeat`` and fails the run in progress, naming the worker,
when one is silent for ``worker_silence_timeout``; a worker that never joins fails the
start-up; a service id the mesh did not plan is ignored.

The workers are simulated (tests/harness/sim_workers.py): real Worker services in one
child process, real TCP and CURVE to the mesh. Freezing or killing that process is what a
frozen or lost host looks like to the controller: there is no actor to watch, so silence
is the only signal. Every wait below has a deadline, so a broken rule fails the test
instead of hanging it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from aiperf.errors import MeshTimeoutError, ServiceFailedError
from aiperf.mesh import Mesh
from aiperf.results import ProfileResult
from tests.harness.sim_workers import SIM_URL, SimWorkers, simulated_mesh

WORKERS = 4
SILENCE_S = 2.0
# The brief's bound past the silence rule: the last heartbeat may be up to one
# heartbeat_interval (1 s) older than the freeze, and the controller looks every 0.5 s.
DETECTION_MARGIN_S = 1.5
# Well past any run in this file, far below pytest's timeout: a run that never fails is
# reported as such instead of hanging the session.
RUN_JOIN_S = 30.0
STARTUP_S = 3.0
# Long enough that only a failure ends the run.
DURATION_S = 60.0
STRAY_WARNING = "ignored the registration of an unexpected service 'worker_99'"


@dataclass
class _Outcome:
    result: ProfileResult | None = None
    error: BaseException | None = None
    ended: float | None = None


class _RunInThread:
    """A duration run on a thread of its own, so the test can freeze or kill workers while
    it runs. ``started`` is set once the mesh has taken the run (progress reached us)."""

    def __init__(self, mesh: Mesh) -> None:
        self.outcome = _Outcome()
        self.started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(mesh,), name="liveness-run",
                                        daemon=True)

    def _run(self, mesh: Mesh) -> None:
        try:
            # A modest rate: the point is a run in progress, not load on a 2-core box.
            self.outcome.result = mesh.run(
                url=SIM_URL, concurrency=8, request_rate=200, benchmark_duration=DURATION_S,
                progress=lambda _: self.started.set())
        except BaseException as exc:
            self.outcome.error = exc
        finally:
            self.outcome.ended = time.monotonic()
            self.started.set()

    def __enter__(self) -> _RunInThread:
        self._thread.start()
        # Progress comes about once a second once records flow: the workers are serving.
        assert self.started.wait(RUN_JOIN_S), "the run never reported progress"
        assert self.outcome.ended is None, f"the run ended early: {self.outcome}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(RUN_JOIN_S)

    def join(self) -> _Outcome:
        self._thread.join(RUN_JOIN_S)
        assert not self._thread.is_alive(), f"the run did not end within {RUN_JOIN_S}s"
        return self.outcome


@pytest.fixture
def mesh_of_four() -> Iterator[tuple[Mesh, SimWorkers]]:
    with simulated_mesh(WORKERS, worker_silence_timeout=SILENCE_S,
                        startup_timeout=30) as (mesh, sim):
        yield mesh, sim


def _assert_names_a_silent_worker(error: BaseException | None) -> None:
    assert isinstance(error, ServiceFailedError), repr(error)
    assert error.service_id in {f"worker_{i}" for i in range(WORKERS)}, error.service_id
    assert error.service_id in str(error)
    assert "silent" in str(error)
    assert f"worker_silence_timeout={SILENCE_S:g}s" in str(error)


def test_a_frozen_worker_host_fails_the_run_within_the_silence_timeout(
    mesh_of_four: tuple[Mesh, SimWorkers],
) -> None:
    mesh, sim = mesh_of_four
    assert sim.pid is not None
    with _RunInThread(mesh) as run:
        frozen_at = time.monotonic()
        os.kill(sim.pid, signal.SIGSTOP)
        try:
            outcome = run.join()
        finally:
            os.kill(sim.pid, signal.SIGCONT)
    _assert_names_a_silent_worker(outcome.error)
    assert outcome.ended is not None
    took = outcome.ended - frozen_at
    assert took < SILENCE_S + DETECTION_MARGIN_S, f"detected after {took:.2f}s"
    # A failed run ends the mesh: it says so rather than serving another run.
    with pytest.raises(Exception, match=r"shut down|not running"):
        mesh.run(url=SIM_URL, request_count=1)


def test_a_killed_worker_host_fails_the_run_by_its_silence(
    mesh_of_four: tuple[Mesh, SimWorkers],
) -> None:
    mesh, sim = mesh_of_four
    assert sim.pid is not None
    with _RunInThread(mesh) as run:
        killed_at = time.monotonic()
        os.kill(sim.pid, signal.SIGKILL)
        outcome = run.join()
    _assert_names_a_silent_worker(outcome.error)
    assert outcome.ended is not None
    took = outcome.ended - killed_at
    assert took < SILENCE_S + DETECTION_MARGIN_S, f"detected after {took:.2f}s"
    # Reaped: the simulation's process is gone (-9), nothing of it is left running.
    assert sim.wait(timeout=10) == -signal.SIGKILL


def _launch(caplog: pytest.LogCaptureFixture, startup_timeout: float = STARTUP_S) -> Mesh:
    caplog.set_level(logging.WARNING, logger="aiperf.mesh")
    return Mesh(backend="external", workers=WORKERS, startup_timeout=startup_timeout).launch()


@contextlib.contextmanager
def _workers(mesh: Mesh, *groups: tuple[int, int]) -> Iterator[list[SimWorkers]]:
    """Simulation processes of (first id, count) each; stopped with a short deadline, since
    a worker the mesh does not know is never told to leave (SIGTERM ends it)."""
    started: list[SimWorkers] = []
    try:
        for first, count in groups:
            started.append(SimWorkers(mesh.service_config, count=count, first=first).start())
        yield started
    finally:
        mesh.shutdown()
        for sim in started:
            sim.stop(timeout=4)


def test_a_worker_that_never_joins_fails_the_start_up_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mesh = _launch(caplog)
    with _workers(mesh, (0, WORKERS - 1)):
        began = time.monotonic()
        with pytest.raises(MeshTimeoutError) as caught:
            mesh.wait_ready()
        assert time.monotonic() - began >= STARTUP_S
        message = str(caught.value)
        assert "startup_timeout" in message
        assert f"worker_{WORKERS - 1}" in message.rsplit(":", 1)[-1]
        assert "worker_0" not in message


def test_an_unexpected_service_id_does_not_count_towards_readiness(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three planned workers and a stray "worker_99" make four registrations, but not the
    four workers the mesh waits for: the start-up fails at startup_timeout."""
    mesh = _launch(caplog)
    with _workers(mesh, (99, 1), (0, WORKERS - 1)):
        began = time.monotonic()
        with pytest.raises(MeshTimeoutError):
            mesh.wait_ready()
        assert time.monotonic() - began >= STARTUP_S
        assert mesh.services == {}
    assert STRAY_WARNING in caplog.text


def test_an_unexpected_service_id_is_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stray joins first and is logged and left out; the planned workers then make the
    mesh ready, and a run takes credits to them only."""
    caplog.set_level(logging.WARNING, logger="aiperf.mesh")
    # max_run_seconds: a run that waits on the stray fails instead of hanging.
    mesh = Mesh(backend="external", workers=WORKERS, startup_timeout=30,
                max_run_seconds=RUN_JOIN_S / 2).launch()
    with _workers(mesh, (99, 1)) as sims:
        deadline = time.monotonic() + 30
        while STRAY_WARNING not in caplog.text:
            assert time.monotonic() < deadline, "the stray's registration was not logged"
            time.sleep(0.05)
        sims.append(SimWorkers(mesh.service_config, count=WORKERS).start())
        mesh.wait_ready()
        workers = {sid for sid in mesh.services if sid.startswith("worker_")}
        assert workers == {f"worker_{i}" for i in range(WORKERS)}
        result = mesh.run(url=SIM_URL, concurrency=8, request_count=200)
        assert result.request_count == 200 and result.invariant["ok"], result.invariant
        assert {r["metadata"]["worker_id"] for r in result.records} <= workers
