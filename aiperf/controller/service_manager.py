"""Starts the services ``plugins.yaml`` marks ``auto_start``, and watches their processes.

Services are forked from the controller after it has imported every service class and
before it creates any ZeroMQ context or thread: a fork then costs a few milliseconds and
shares the imported modules, where spawning a fresh interpreter per service would cost
about half a second of imports each on this 2-core machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from aiperf.common.config import ServiceConfig
from aiperf.common.process import signal_name
from aiperf.controller.bootstrap import bootstrap_service
from aiperf.plugin import PluginType, plugins
from aiperf.plugin.metadata import ServiceMetadata

if TYPE_CHECKING:
    from aiperf.ray.launcher import RayLauncher as RemoteLauncher

EXIT_STATUS_WAIT_S = 0.5


@dataclass
class PlannedService:
    service_id: str
    name: str
    service_class: type
    index: int
    required: bool
    nice: int = 0
    # Runs on another host (backends ray and external): no process of ours to watch.
    remote: bool = False
    process: BaseProcess | None = field(default=None, repr=False)


def plan_services(service_config: ServiceConfig) -> list[PlannedService]:
    planned: list[PlannedService] = []
    for entry in plugins.entries(PluginType.SERVICE):
        meta = entry.metadata
        assert isinstance(meta, ServiceMetadata)
        if not meta.auto_start:
            continue
        count = 1
        if meta.replicable and meta.count_setting:
            count = int(getattr(service_config, meta.count_setting))
        cls = plugins.get_class(PluginType.SERVICE, entry.name)
        for i in range(count):
            service_id = f"{entry.name}_{i}" if meta.replicable else entry.name
            nice = service_config.background_nice if meta.off_request_path else 0
            remote = meta.remote_capable and service_config.remote_workers()
            planned.append(PlannedService(service_id, entry.name, cls, i, meta.required, nice,
                                          remote))
    return planned


class ServiceManager:
    """Forks the local services and, for the ray backend, launches the remote ones as Ray
    actors (``aiperf.ray``); the external backend's remote services are someone else's."""

    def __init__(self, service_config: ServiceConfig) -> None:
        self.service_config = service_config
        self.services = plan_services(service_config)
        self._context = multiprocessing.get_context("fork")
        self.remote_launcher: RemoteLauncher | None = None

    @property
    def local(self) -> list[PlannedService]:
        return [s for s in self.services if not s.remote]

    @property
    def remote(self) -> list[PlannedService]:
        return [s for s in self.services if s.remote]

    def start_all(self) -> None:
        """Fork every local service. Call before anything in this process starts a thread
        (``start_remote`` does: Ray's client)."""
        parent = os.getpid()
        for svc in self.local:
            proc = self._context.Process(
                target=bootstrap_service,
                args=(svc.service_class, self.service_config, svc.service_id, svc.index, parent,
                      svc.nice),
                name=svc.service_id,
            )
            proc.start()
            svc.process = proc

    def start_remote(self) -> None:
        """Launch the remote services (ray backend); returns once they are asked for."""
        if self.service_config.backend == "ray" and self.remote:
            from aiperf.ray.launcher import RayLauncher

            self.remote_launcher = RayLauncher(self.service_config, self.remote)
            self.remote_launcher.start()

    def describe(self, service_id: str) -> str:
        """Where a service runs, for error messages: "worker_3 (node 10.0.0.7, Ray actor
        5f1c...)"."""
        where = self.remote_launcher.where(service_id) if self.remote_launcher else ""
        return f"{service_id} ({where})" if where else service_id

    def by_sentinel(self) -> dict[int, PlannedService]:
        return {s.process.sentinel: s for s in self.services if s.process is not None}

    def exit_description(self, svc: PlannedService) -> str:
        assert svc.process is not None
        # The sentinel fires when the child's fds close, a moment before its exit status
        # can be collected: wait for it briefly.
        svc.process.join(EXIT_STATUS_WAIT_S)
        return signal_name(svc.process.exitcode)

    def alive(self) -> list[PlannedService]:
        return [s for s in self.services if s.process is not None and s.process.is_alive()]

    def stop_all(self, timeout: float) -> None:
        """Wait up to ``timeout`` for exits already requested, then SIGTERM, then SIGKILL;
        remote services are stopped by their launcher the same way."""
        if self.remote_launcher is not None:
            self.remote_launcher.stop(timeout)
        deadline = time.monotonic() + timeout
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            living = self.alive()
            if not living:
                return
            for svc in living:
                if sig is not None and svc.process is not None and svc.process.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(svc.process.pid, sig)
            step_deadline = deadline if sig is None else time.monotonic() + timeout / 2
            for svc in living:
                assert svc.process is not None
                svc.process.join(max(0.0, step_deadline - time.monotonic()))
