"""The system controller: one per mesh, in its own process, forked services below it.

Lifecycle: start -> ready -> (configure -> start -> results) x N -> shutdown.

Services talk to it over a ROUTER socket (their DEALER identity is their service id); the
host handle talks to it over a second ROUTER. A run is a sequence of commands, each of which
waits for one ``CommandAck`` per service under ``command_timeout``; results arrive as a
``ProfileResultsMessage`` under the run's own deadlines (``run_deadline``: duration runs;
``stall_timeout``: no new record for longer than one request may take). A run that misses
one is cancelled in every service (``CancelRunCommand``) before the host hears of it, so
the next run on the mesh starts clean. While it serves a run the controller sends the host
a heartbeat every ``heartbeat_interval``: the host's only deadline is the controller's
silence. A service that reports
a fatal error or whose process exits fails the run in progress with that service's name and
traceback (or exit signal), and the mesh shuts down: a half-dead mesh is never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from aiperf.common.comms import BusProxy, decode, make_socket, terminate
from aiperf.common.config import ServiceConfig, UserConfig, run_deadline, stall_timeout
from aiperf.common.logging import AIPerfLoggerMixin
from aiperf.common.messages import (
    CancelRequestsMessage,
    CancelRunCommand,
    Command,
    CommandAck,
    ConfigureProfileCommand,
    HostCancelRun,
    HostHello,
    HostShutdown,
    MeshReady,
    Message,
    ProfileResultsMessage,
    RegisterMessage,
    RunHeartbeat,
    RunProfileReply,
    RunProfileRequest,
    RunProgress,
    ServiceErrorMessage,
    ServiceHeartbeat,
    ShutdownCommand,
    StartProfileCommand,
)
from aiperf.controller.service_manager import PlannedService, ServiceManager
from aiperf.dataset.models import dataset_packed
from aiperf.errors import (
    AIPerfError,
    ErrorDetails,
    MeshError,
    MeshTimeoutError,
    ServiceFailedError,
)
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import ServiceMetadata

# How long a service's exit waits before it fails the mesh, so that an error the service
# sent before exiting is reported first (``_on_process_exit``).
EXIT_GRACE_S = 0.25


class SystemController(AIPerfLoggerMixin):
    logger_name = "aiperf.controller"

    def __init__(self, service_config: ServiceConfig, manager: ServiceManager) -> None:
        self.service_config = service_config
        self.manager = manager
        self.registered: dict[str, int] = {}
        self._all_registered = asyncio.Event()
        self._failure: ErrorDetails | None = None
        self._failed = asyncio.Event()
        self._stop = asyncio.Event()
        self._acks: dict[str, dict[str, CommandAck]] = {}
        self._ack_events: dict[str, asyncio.Event] = {}
        self._results: asyncio.Future[dict[str, Any]] | None = None
        self._run_lock = asyncio.Lock()
        self._ids = itertools.count()
        self._hosts_waiting: list[bytes] = []
        self._run_host: bytes | None = None
        self._run_id = ""
        self._cancel_requested = asyncio.Event()
        self._cancel_for = ""
        self._records_seen = -1
        self._last_record_at = 0.0
        # Remote services (another host: no process to watch): when each was last heard.
        self._remote_ids = {s.service_id for s in manager.remote}
        self._last_heard: dict[str, float] = {}

    # -- sockets --------------------------------------------------------------------------

    def _open(self) -> None:
        cfg = self.service_config
        self.context = zmq.asyncio.Context()
        keys = cfg.mesh_keys
        self.proxy = BusProxy(cfg.address("bus_in"), cfg.address("bus_out"), keys=keys)
        self.proxy.start()
        self.control = make_socket(self.context, zmq.ROUTER, cfg.address("control"),
                                   bind=True, keys=keys)
        self.host = make_socket(self.context, zmq.ROUTER, cfg.address("host"), bind=True,
                                keys=keys)

    def _close(self) -> None:
        self.control.close(0)
        self.host.close(200)
        self.proxy.stop()
        terminate(self.context)

    async def _send_service(self, service_id: str, message: Message) -> None:
        await self.control.send_multipart([service_id.encode(), *message.encode()])

    async def _send_host(self, identity: bytes, message: Message) -> None:
        await self.host.send_multipart([identity, *message.encode()])

    # -- main -----------------------------------------------------------------------------

    async def run(self) -> None:
        self._open()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        for sentinel, svc in self.manager.by_sentinel().items():
            loop.add_reader(sentinel, self._on_process_exit, sentinel, svc)
        tasks = [
            loop.create_task(self._service_loop()),
            loop.create_task(self._host_loop()),
            loop.create_task(self._await_registration()),
        ]
        if self._remote_ids:
            tasks += [loop.create_task(self._start_remote()),
                      loop.create_task(self._watch_remote())]
        try:
            await self._stop.wait()
        finally:
            for sentinel in self.manager.by_sentinel():
                loop.remove_reader(sentinel)
            await self._shutdown_services()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._close()
            shutil.rmtree(self.service_config.run_dir, ignore_errors=True)

    async def _await_registration(self) -> None:
        expected = {s.service_id for s in self.manager.services}
        try:
            async with asyncio.timeout(self.service_config.startup_timeout):
                await self._all_registered.wait()
        except TimeoutError:
            missing = sorted(expected - set(self.registered))
            self._fail(ErrorDetails.from_exception(MeshTimeoutError(
                f"services did not register within startup_timeout="
                f"{self.service_config.startup_timeout}s: {', '.join(missing)}"
            )))
            return
        self.info(lambda: f"mesh ready: {len(self.registered)} services")
        for identity in self._hosts_waiting:
            await self._send_host(identity, self._ready_message())
        self._hosts_waiting.clear()

    async def _start_remote(self) -> None:
        """Launch the remote services (ray backend; Ray's calls block, so on a thread) and
        watch their actors; the external backend's are started by someone else."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self.manager.start_remote)
            launcher = self.manager.remote_launcher
            if launcher is None:
                return
            await asyncio.to_thread(launcher.wait_placed, self.service_config.startup_timeout)
            launcher.watch(lambda service_id, how: loop.call_soon_threadsafe(
                self._on_remote_exit, service_id, how))
        except Exception as exc:
            self._fail(ErrorDetails.from_exception(
                exc if isinstance(exc, MeshError) else MeshError(f"{type(exc).__name__}: {exc}"),
                service_id="system_controller"))

    def _on_remote_exit(self, service_id: str, how: str) -> None:
        if self._stop.is_set():
            return
        where = self.manager.describe(service_id)
        self._fail(ErrorDetails.from_exception(
            ServiceFailedError(f"remote service {where} {how}", service_id=service_id),
            service_id=service_id))

    async def _watch_remote(self) -> None:
        """Fail the run when a remote service goes quiet: a frozen host answers nothing,
        and its actor is not dead, so nothing else would tell (Ray takes about a minute)."""
        cfg = self.service_config
        silence = cfg.worker_silence_timeout
        while not self._stop.is_set():
            await asyncio.sleep(min(0.5, silence / 4))
            now = time.monotonic()
            for service_id, heard in list(self._last_heard.items()):
                if now - heard > silence:
                    self._last_heard.pop(service_id)
                    self._on_remote_exit(
                        service_id, f"went silent: no heartbeat for {now - heard:.1f}s "
                        f"(worker_silence_timeout={silence:g}s; its host may be frozen or "
                        "cut off)")

    def _ready_message(self) -> MeshReady:
        launcher = self.manager.remote_launcher
        locations = {s.service_id: launcher.where(s.service_id) if launcher else "external"
                     for s in self.manager.remote}
        return MeshReady(services=dict(self.registered), locations=locations)

    def _on_process_exit(self, sentinel: int, svc: PlannedService) -> None:
        asyncio.get_running_loop().remove_reader(sentinel)
        if self._stop.is_set():
            return
        how = self.manager.exit_description(svc)
        if not svc.required:
            # An optional service may go; the mesh carries on without it.
            self.registered.pop(svc.service_id, None)
            self.warning(f"optional service {svc.service_id} {how}")
            return
        failure = ErrorDetails.from_exception(
            ServiceFailedError(f"service {svc.service_id} {how}", service_id=svc.service_id),
            service_id=svc.service_id,
        )
        # A service that fails on purpose sends its error (with the traceback) and then
        # exits; on a busy box the exit can be seen first. The message is already queued
        # by then, so a moment's grace lets the cause, not "exited with code 1", be named.
        asyncio.get_running_loop().call_later(EXIT_GRACE_S, self._fail, failure)

    def _fail(self, details: ErrorDetails) -> None:
        """Record the first fatal failure; it fails the run in progress and ends the mesh."""
        if self._failure is None:
            self._failure = details
            self.error(f"mesh failed: {details.type}: {details.message}")
        self._failed.set()
        if self._results is not None and not self._results.done():
            self._results.set_exception(details.to_exception())
        for event in self._ack_events.values():
            event.set()
        for identity in self._hosts_waiting:
            asyncio.get_running_loop().create_task(
                self._send_host(identity, MeshReady(error=details))
            )
        self._hosts_waiting.clear()
        if self._results is None:
            self._stop.set()

    # -- messages from services -------------------------------------------------------------

    async def _service_loop(self) -> None:
        handlers = {
            RegisterMessage: self._on_register,
            CommandAck: self._on_ack,
            ServiceErrorMessage: self._on_service_error,
            ProfileResultsMessage: self._on_results,
            RunProgress: self._on_progress,
            ServiceHeartbeat: self._on_heartbeat,
        }
        while True:
            identity, *frames = await self.control.recv_multipart()
            message = decode(frames)
            handler = handlers.get(type(message))
            if handler is None:
                self.warning(f"unexpected {message.message_type.value} from {identity!r}")
                continue
            handler(identity.decode(), message)

    def _on_heartbeat(self, service_id: str, message: ServiceHeartbeat) -> None:
        if service_id in self._last_heard:
            self._last_heard[service_id] = time.monotonic()

    def _on_register(self, service_id: str, message: RegisterMessage) -> None:
        expected = {s.service_id for s in self.manager.services}
        if service_id not in expected:
            # Only a peer with this mesh's keys gets this far (remote backends): still, a
            # stray id must not count towards readiness.
            self.warning(f"ignored the registration of an unexpected service {service_id!r}")
            return
        if service_id in self._remote_ids:
            self._last_heard[service_id] = time.monotonic()
        self.registered[service_id] = message.pid
        if len(self.registered) == len(self.manager.services):
            self._all_registered.set()

    def _on_ack(self, service_id: str, message: CommandAck) -> None:
        acks = self._acks.get(message.command_id)
        if acks is not None:
            acks[service_id] = message
            self._ack_events[message.command_id].set()

    def _on_service_error(self, service_id: str, message: ServiceErrorMessage) -> None:
        if message.fatal:
            self._fail(message.error)
        else:
            self.warning(f"{service_id}: {message.error.message}")

    def _on_progress(self, service_id: str, message: RunProgress) -> None:
        if message.run_id == self._run_id and message.records != self._records_seen:
            self._records_seen = message.records
            self._last_record_at = time.monotonic()
        if self._run_host is not None:
            asyncio.get_running_loop().create_task(self._send_host(self._run_host, message))

    def _on_results(self, service_id: str, message: ProfileResultsMessage) -> None:
        if self._results is not None and not self._results.done():
            self._results.set_result(message.results)

    async def _command(
        self, command: Command, services: list[str] | None = None
    ) -> dict[str, CommandAck]:
        """Send ``command`` to ``services`` (default: all) and wait for every ack."""
        targets = services if services is not None else list(self.registered)
        command_id = command.command_id
        acks: dict[str, CommandAck] = {}
        self._acks[command_id] = acks
        event = self._ack_events[command_id] = asyncio.Event()
        try:
            for service_id in targets:
                await self._send_service(service_id, command)
            deadline = time.monotonic() + self.service_config.command_timeout
            while len(acks) < len(targets):
                event.clear()
                if self._failure is not None:
                    raise self._failure.to_exception()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sorted(set(targets) - set(acks))
                    raise MeshTimeoutError(
                        f"{command.message_type.value}: no answer within command_timeout="
                        f"{self.service_config.command_timeout}s from {', '.join(missing)}"
                    )
                # asyncio.timeout, not wait_for, throughout: on Python 3.11 wait_for
                # loses a cancel that lands as its awaitable completes.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await event.wait()
        finally:
            self._acks.pop(command_id, None)
            self._ack_events.pop(command_id, None)
        for ack in acks.values():
            if ack.error is not None:
                raise ack.error.to_exception()
        return acks

    def _new_id(self) -> str:
        return f"cmd-{next(self._ids)}"

    # -- host requests ------------------------------------------------------------------------

    async def _host_loop(self) -> None:
        while True:
            identity, *frames = await self.host.recv_multipart()
            message = decode(frames)
            if isinstance(message, HostHello):
                if self._failure is not None:
                    await self._send_host(identity, MeshReady(error=self._failure))
                elif self._all_registered.is_set():
                    await self._send_host(identity, self._ready_message())
                else:
                    self._hosts_waiting.append(identity)
            elif isinstance(message, RunProfileRequest):
                asyncio.get_running_loop().create_task(self._serve_run(identity, message))
            elif isinstance(message, HostCancelRun):
                # It may overtake its run, still waiting for the run lock.
                self._cancel_for = message.run_id
                if message.run_id == self._run_id:
                    self._cancel_requested.set()
            elif isinstance(message, HostShutdown):
                self._stop.set()

    async def _serve_run(self, identity: bytes, request: RunProfileRequest) -> None:
        async with self._run_lock:
            reply = RunProfileReply(run_id=request.run_id)
            self._run_host = identity
            self._run_id = request.run_id
            self._cancel_requested.clear()
            if self._cancel_for == request.run_id:
                self._cancel_requested.set()
            heartbeat = asyncio.get_running_loop().create_task(
                self._heartbeat(identity, request.run_id))
            try:
                reply.results = await self._run_profile(request)
            except AIPerfError as exc:
                reply.error = ErrorDetails(
                    type=type(exc).__name__, message=str(exc),
                    service_id=getattr(exc, "service_id", None) or None,
                    traceback=getattr(exc, "details", None) or None,
                )
            except Exception as exc:
                reply.error = ErrorDetails.from_exception(exc, service_id="system_controller")
            finally:
                heartbeat.cancel()
                self._run_host = None
                self._run_id = ""
            reply.mesh_failed = self._failure is not None
            await self._send_host(identity, reply)
            if self._failure is not None:
                self._stop.set()

    async def _heartbeat(self, identity: bytes, run_id: str) -> None:
        while True:
            await asyncio.sleep(self.service_config.heartbeat_interval)
            await self._send_host(identity, RunHeartbeat(run_id=run_id))

    def _stages(self) -> list[list[str]]:
        stages: dict[int, list[str]] = {}
        for svc in self.manager.services:
            meta = plugins.get_metadata(PluginType.SERVICE, svc.name)
            assert isinstance(meta, ServiceMetadata)
            stages.setdefault(meta.configure_stage, []).append(svc.service_id)
        return [stages[k] for k in sorted(stages)]

    async def _run_profile(self, request: RunProfileRequest) -> dict[str, Any]:
        if self._failure is not None:
            raise self._failure.to_exception()
        if not self._all_registered.is_set():
            raise MeshError("the mesh is not ready")
        config = UserConfig.from_wire(request.user_config)
        loop = asyncio.get_running_loop()
        self._results = loop.create_future()
        try:
            extra: dict[str, Any] = {}
            for stage in self._stages():
                command = ConfigureProfileCommand(
                    command_id=self._new_id(), run_id=request.run_id,
                    user_config=request.user_config, **extra,
                )
                acks = await self._configure_stage(command, stage)
                for ack in acks.values():
                    extra.update(ack.payload)
            self._records_seen = -1
            self._last_record_at = time.monotonic()
            acks = await self._command(
                StartProfileCommand(command_id=self._new_id(), run_id=request.run_id)
            )
            idle_gap = max((float(a.payload.get("idle_gap_s", 0.0)) for a in acks.values()),
                           default=0.0)
            return await self._await_results(request.run_id, config, idle_gap)
        finally:
            self._results = None

    async def _configure_stage(self, command: ConfigureProfileCommand,
                               stage: list[str]) -> dict[str, CommandAck]:
        """Configure one stage; its remote services, which cannot read the run dir, get
        the dataset file's bytes with the command (compressed: sent once per worker)."""
        remote = [s for s in stage if s in self._remote_ids]
        if not remote or not command.dataset_path:
            return await self._command(command, stage)
        packed = dataset_packed(Path(command.dataset_path).read_bytes())
        with_dataset = command.model_copy(update={
            "command_id": self._new_id(), "dataset_inline": packed})
        local = [s for s in stage if s not in self._remote_ids]
        local_acks, remote_acks = await asyncio.gather(
            self._command(command, local), self._command(with_dataset, remote))
        return {**local_acks, **remote_acks}

    async def _await_results(self, run_id: str, config: UserConfig,
                             idle_gap: float) -> dict[str, Any]:
        """The run's results, under its deadlines; a run that misses one, or that the host
        cancels, is cancelled in every service first."""
        assert self._results is not None
        cfg = self.service_config
        started = time.monotonic()
        deadline = run_deadline(config, cfg)
        stall = stall_timeout(config, cfg, idle_gap)
        cancel = asyncio.get_running_loop().create_task(self._cancel_requested.wait())
        try:
            while True:
                done, _ = await asyncio.wait(
                    {self._results, cancel}, timeout=min(cfg.heartbeat_interval, stall),
                    return_when=asyncio.FIRST_COMPLETED)
                if self._results.done():
                    return self._results.result()
                if cancel in done:
                    return await self._cancel_with_results(run_id)
                now = time.monotonic()
                if deadline is not None and now - started > deadline:
                    reason = f"did not finish within its deadline of {deadline:.1f}s"
                elif now - self._last_record_at > stall:
                    reason = (f"produced no record for {stall:.1f}s (request timeout "
                              f"{config.request_timeout_seconds:g}s + margin)")
                else:
                    continue
                self.warning(f"run {run_id} {reason}: cancelling it")
                await self._cancel_run(run_id, keep_results=False)
                raise MeshTimeoutError(f"run {run_id} {reason}; it was cancelled")
        finally:
            cancel.cancel()

    async def _cancel_with_results(self, run_id: str) -> dict[str, Any]:
        """The host cancelled the run: stop issuing, cancel what is in flight, and return
        the results of every request that was issued (cancelled ones as errors)."""
        assert self._results is not None
        await self._cancel_run(run_id, keep_results=True)
        timeout = self.service_config.command_timeout
        try:
            async with asyncio.timeout(timeout):
                results = await asyncio.shield(self._results)
        except TimeoutError:
            await self._cancel_run(run_id, keep_results=False)
            raise MeshTimeoutError(
                f"run {run_id} was cancelled but produced no results within {timeout:g}s"
            ) from None
        # Marked here, not only by the records manager: its cancel command races the
        # timing manager's CreditsComplete (another socket), and with nothing in flight it
        # can finish the run on the latter first (2 in 10 runs of the test at load 3).
        results["was_cancelled"] = True
        return results

    async def _cancel_run(self, run_id: str, *, keep_results: bool) -> None:
        """End ``run_id`` in every service: first the timing manager stops issuing, then
        workers cancel what is in flight, then every service drops (or, with
        ``keep_results``, finishes) the run."""
        issuers = [s.service_id for s in self.manager.services if s.name == "timing_manager"]
        others = [s for s in self.registered if s not in issuers]
        try:
            await self._command(CancelRunCommand(
                command_id=self._new_id(), run_id=run_id, keep_results=keep_results), issuers)
            for svc in self.manager.services:
                if svc.name == "worker" and svc.service_id in self.registered:
                    await self._send_service(svc.service_id, CancelRequestsMessage(run_id=run_id))
            # A worker handles its control messages in order: its ack of this command
            # means it has cancelled what it had in flight.
            await self._command(CancelRunCommand(
                command_id=self._new_id(), run_id=run_id, keep_results=keep_results), others)
        except MeshError as exc:
            # A service that cannot even cancel leaves the mesh in an unknown state.
            self._fail(ErrorDetails.from_exception(exc, service_id="system_controller"))
            raise

    async def _shutdown_services(self) -> None:
        command = ShutdownCommand(command_id=self._new_id())
        remote = [s for s in self.manager.remote if s.service_id in self.registered]
        for svc in [*self.manager.alive(), *remote]:
            with contextlib.suppress(zmq.ZMQError):
                await self._send_service(svc.service_id, command)
        await asyncio.to_thread(self.manager.stop_all, self.service_config.shutdown_timeout)
