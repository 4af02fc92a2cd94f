"""The host-side handle of a mesh: start it, run profiles on it, shut it down.

    with Mesh(workers=2) as mesh:
        result = mesh.run(UserConfig(url=..., concurrency=8, request_count=200))

The same calls exist as coroutines (``astart``, ``arun``, ``ashutdown``; ``async with``).
The controller runs in a child process that dies with this one (it watches this process's
pid); the services are its children and die with it. It runs in its own process group, so
a Ctrl-C at the terminal reaches this process only, which decides what the mesh does.
Every wait here has a deadline from ``ServiceConfig`` and also watches the controller
process, so a crash surfaces as ``MeshError`` naming what died instead of a hang.

What the mesh's processes write to stderr (their log lines, a traceback) is relayed to
Python logging on logger ``aiperf.mesh`` (``capture_logs=True``, the default: pytest's log
capture then shows it), or to this process's stderr as it is (``capture_logs=False``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from aiperf.common.config import ServiceConfig, UserConfig, format_validation_error
from aiperf.common.process import signal_name
from aiperf.errors import ConfigError, MeshError, MeshTimeoutError, RunInterrupted

if TYPE_CHECKING:
    import zmq

    from aiperf.common.messages import Message, RunProgress
    from aiperf.controller.log_relay import LogRelay
    from aiperf.results import ProfileResult
    from aiperf.server_metrics import ServerMetrics, ServerMetricsCollector

# The wire (zmq, the message models) and the results are imported only once the
# controller is launched: those imports then overlap the controller's own boot instead of
# delaying it (importing this module takes about 0.2 s instead of 0.35 s on 2 cores).

_POLL_MS = 50
_STARTUP_MARGIN_S = 5.0
_HOST_PID_FILE = "host.pid"


def _sweep_stale_run_dirs(parent: Path) -> None:
    """Remove run dirs of hosts that were killed before they could clean up."""
    for run_dir in parent.glob("aiperf-mesh-*"):
        try:
            pid = int((run_dir / _HOST_PID_FILE).read_text())
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(run_dir, ignore_errors=True)
        except (OSError, ValueError):
            continue


def _server_metrics_collector(config: UserConfig) -> ServerMetricsCollector | None:
    """Started (its baseline scrape taken) when the profile asks for server metrics."""
    if config.server_metrics is None:
        return None
    from aiperf.server_metrics import ServerMetricsCollector, scrape_targets

    # the endpoint's own server gets the endpoint's credentials (a protected /metrics)
    return ServerMetricsCollector(scrape_targets(config),
                                  config.server_metrics_interval).start()


def _server_summary(collector: ServerMetricsCollector, result: ProfileResult) -> ServerMetrics:
    """The collector's statistics over the profiling window: from the first profiling
    request's start to the last one's end (wall clock, as the scrapes are stamped)."""
    import datetime as dt

    def wall_ns(text: str | None) -> int | None:
        if not text:
            return None
        try:
            stamp = dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        return round(stamp.timestamp() * 1e6) * 1000

    summary = collector.summary(wall_ns(result.start_time), wall_ns(result.end_time))
    for warning in summary.warnings:
        result.warnings.append(f"server metrics: {warning}")
    failed = [f"{url}: {info.errors[0]}" for url, info in summary.endpoints.items()
              if not info.successful and info.errors]
    if failed:
        result.warnings.append("server metrics: no scrape succeeded at " + "; ".join(failed))
    return summary


class Mesh:
    """A running service mesh. Not thread-safe: use it from one thread (or one event loop)."""

    def __init__(self, service_config: ServiceConfig | None = None, *,
                 capture_logs: bool = True, **overrides: Any) -> None:
        base = service_config or ServiceConfig()
        self.service_config = base
        if overrides:  # validated again: model_copy(update=...) would take anything
            try:
                self.service_config = ServiceConfig.model_validate(
                    {**base.model_dump(exclude_unset=True), **overrides})
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc, ServiceConfig, "Mesh")) from None
        self.capture_logs = capture_logs
        self.services: dict[str, int] = {}
        # Remote services (ray, external backends) -> where they run: "node 10.0.0.7, host
        # gpu-3, pid 4242, Ray actor 5f1c2e...".
        self.locations: dict[str, str] = {}
        self._log_relay: LogRelay | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._context: zmq.Context[Any] | None = None
        self._socket: Any = None
        self._dead: MeshError | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None and not self._dead

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Mesh:
        """Start the mesh and wait until every service has registered."""
        self.launch()
        return self.wait_ready()

    def launch(self) -> Mesh:
        """Start the controller and return at once; ``wait_ready`` (or the first ``run``)
        waits for the services. Lets a caller do other work while the mesh boots."""
        if self._process is not None:
            raise MeshError("this mesh was started already; create a new Mesh")
        import tempfile

        from aiperf.plugin import plugins

        _sweep_stale_run_dirs(Path(tempfile.gettempdir()))
        if self.service_config.backend == "ray":
            from aiperf.ray.cluster import prepare

            self.service_config = prepare(self.service_config)
        self.service_config = self.service_config.prepared()
        self.service_config.runtime_plugins = {
            **plugins.runtime_manifest(), **self.service_config.runtime_plugins
        }
        Path(self.service_config.run_dir, _HOST_PID_FILE).write_text(str(os.getpid()))
        env = dict(os.environ)
        # The mesh's keys travel revealed to the controller only (this env is its own).
        env["AIPERF_SERVICE_CONFIG"] = self.service_config.model_dump_json(
            context={"reveal": True})
        env["AIPERF_PARENT_PID"] = str(os.getpid())
        # The controller imports plugin classes by module path, including ones registered
        # at run time from test modules: give it the host's import path.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "aiperf.controller"], env=env, stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE, process_group=0,
        )
        from aiperf.controller.log_relay import LogRelay

        assert self._process.stderr is not None
        self._log_relay = LogRelay(self._process.stderr, to_logging=self.capture_logs)
        import zmq

        from aiperf.common.comms import make_socket
        from aiperf.common.messages import HostHello

        self._context = zmq.Context()
        self._socket = make_socket(
            self._context, zmq.DEALER, self.service_config.address("host"), bind=False,
            keys=self.service_config.mesh_keys,
        )
        self._send(HostHello())
        return self

    def wait_ready(self) -> Mesh:
        if self.services:
            return self
        from aiperf.common.messages import MeshReady

        try:
            # The controller's own start-up deadline runs from when it has booted, and its
            # answer names what is missing: wait a little longer than it does.
            ready = self._receive(MeshReady, self.service_config.startup_timeout
                                  + _STARTUP_MARGIN_S, "start-up")
            if ready.error is not None:
                raise ready.error.to_exception()
            self.services = ready.services
            self.locations = ready.locations
        except BaseException:
            self.shutdown()
            raise
        return self

    def run(self, config: UserConfig | None = None, *,
            progress: Callable[[RunProgress], None] | None = None,
            partial_on_interrupt: bool = False,
            **profile: Any) -> ProfileResult:
        """Run one profile and return its result; raises the run's error, if any.

        ``profile`` keys build the config, or override ``config``'s (validated again: a bad
        one is a ``ConfigError`` naming it). ``progress`` is called about once a second
        with the records collected so far. With ``partial_on_interrupt``, Ctrl-C cancels
        the run in the mesh and raises ``RunInterrupted`` carrying the results of what was
        issued (in-flight requests as cancellation errors); the mesh stays usable. Without
        it, Ctrl-C stops the mesh."""
        if isinstance(profile.get("api_key"), str):
            # Masked from here on, in every frame a traceback (pytest -l) may show.
            profile["api_key"] = SecretStr(profile["api_key"])
        if config is None:
            config = UserConfig.build(**profile)
        elif profile:
            config = config.with_overrides(**profile)
        if self._dead is not None:
            raise self._dead
        if not self.running:
            raise MeshError("the mesh is not running; start it first")
        self.wait_ready()
        from aiperf.common.messages import HostCancelRun, RunProfileReply
        from aiperf.results import ProfileResult

        run_id = uuid.uuid4().hex[:12]
        interrupted = sent = False
        # The controller keeps the run's deadlines and sends a heartbeat while it serves
        # the run: here, only its silence is a timeout.
        silence = self.service_config.command_timeout
        # Server metrics are scraped here, on the host, by threads that sleep between
        # scrapes: the mesh's processes never see them (benchmarks/server_metrics_cost.py).
        scraper = _server_metrics_collector(config)
        try:
            try:
                self._send_run_request(run_id, config)
                sent = True
                reply = self._receive(RunProfileReply, silence, f"run {run_id}", progress,
                                      alive=True)
            except KeyboardInterrupt:
                if not sent:
                    raise KeyboardInterrupt from None  # no run started: the mesh is as it was
                if not partial_on_interrupt:
                    raise
                interrupted = True
                self._send(HostCancelRun(run_id=run_id))
                reply = self._receive(RunProfileReply, silence, f"cancelling run {run_id}",
                                      progress, alive=True)
        except BaseException as exc:
            if scraper is not None:
                scraper.stop(final=False)
            if not sent:
                raise
            if not isinstance(exc, MeshError) or isinstance(exc, MeshTimeoutError):
                # Interrupted (Ctrl-C, pytest-timeout's Failed) or hung: the run is still
                # going in the mesh, so the mesh cannot serve another one. Stop it now.
                self._dead = MeshError(f"the mesh was stopped during run {run_id}: "
                                       f"{type(exc).__name__}")
                self.shutdown()
            raise
        if scraper is not None:
            scraper.stop(final=reply.error is None)
        if reply.error is not None:
            error = reply.error.to_exception()
            if reply.mesh_failed:
                self._dead = MeshError(f"the mesh shut down after: {error}")
            raise error
        assert reply.results is not None
        result = ProfileResult.from_dict(reply.results, config=config)
        if scraper is not None:
            result.server = _server_summary(scraper, result)
        if interrupted:
            raise RunInterrupted(result)
        return result

    def shutdown(self) -> None:
        """Stop every process of the mesh and remove its run dir. Safe to call twice."""
        proc = self._process
        if proc is not None and proc.poll() is None:
            import zmq

            from aiperf.common.messages import HostShutdown

            stopped = False
            if self._socket is not None:  # else launched, but the host never connected
                try:
                    self._send(HostShutdown())
                    proc.wait(self.service_config.shutdown_timeout + 1.0)
                    stopped = True
                except (subprocess.TimeoutExpired, zmq.ZMQError):
                    pass
            if not stopped:
                proc.kill()
                proc.wait(5)
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None
        if self._log_relay is not None:
            self._log_relay.join(1.0)
        if self.service_config.run_dir:
            shutil.rmtree(self.service_config.run_dir, ignore_errors=True)
        if self._dead is None:
            self._dead = MeshError("the mesh was shut down")

    def __enter__(self) -> Mesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- async twins: the same calls on a thread, so an event loop is never blocked ----------

    async def astart(self) -> Mesh:
        return await asyncio.to_thread(self.start)

    async def arun(self, config: UserConfig | None = None, **profile: Any) -> ProfileResult:
        return await asyncio.to_thread(lambda: self.run(config, **profile))

    async def ashutdown(self) -> None:
        await asyncio.to_thread(self.shutdown)

    async def __aenter__(self) -> Mesh:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.ashutdown()

    def _send_run_request(self, run_id: str, config: UserConfig) -> None:
        """The request carries the API key in clear (inside the mesh's private sockets
        only): it lives in this frame alone, so no traceback of ``run`` (pytest ``-l``
        shows locals) ever holds it."""
        from aiperf.common.messages import RunProfileRequest

        dumped = config.model_dump(mode="python")
        if config.api_key is not None:
            dumped["api_key"] = config.api_key.get_secret_value()
        self._send(RunProfileRequest(run_id=run_id, user_config=json.loads(
            json.dumps(dumped, default=str))))

    def _log_tail(self) -> str:
        """The mesh's last stderr lines, for an error saying it died."""
        if self._log_relay is None:
            return ""
        self._log_relay.join(0.5)  # the pipe closes with the last process of the mesh
        lines = self._log_relay.tail()
        return ("; its last output:\n" + "\n".join(lines)) if lines else ""

    # -- wire -----------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self._socket.send_multipart(message.encode())

    def _receive(self, expected: type[Message], timeout: float, what: str,
                 progress: Callable[[RunProgress], None] | None = None,
                 alive: bool = False) -> Any:
        """The next ``expected`` message. ``timeout`` bounds the whole wait, or with
        ``alive`` the silence between two messages of the controller."""
        from aiperf.common.comms import decode
        from aiperf.common.messages import RunProgress

        deadline = time.monotonic() + timeout
        assert self._process is not None
        while True:
            if self._socket.poll(_POLL_MS):
                message = decode(self._socket.recv_multipart())
                if isinstance(message, expected):
                    return message
                if alive:
                    deadline = time.monotonic() + timeout
                if isinstance(message, RunProgress) and progress is not None:
                    progress(message)
                continue
            code = self._process.poll()
            if code is not None:
                self._dead = MeshError(
                    f"the mesh controller {signal_name(code)} during {what}{self._log_tail()}")
                raise self._dead
            if time.monotonic() > deadline:
                quiet = " (no heartbeat)" if alive else ""
                raise MeshTimeoutError(
                    f"{what}: no answer from the mesh within {timeout:.1f}s{quiet}")
