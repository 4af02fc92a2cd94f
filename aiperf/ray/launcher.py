"""Launches a mesh's remote services as Ray actors and watches them (runs in the controller).

One placement group per mesh, one bundle per worker (``ray_worker_resources``), strategy
SPREAD: the workers land on as many nodes as the cluster has room on. Each actor's
``serve`` call is the service's whole life; a thread waits on those calls, so an actor that
dies (its process killed, its node lost) is reported at once with its node and actor id,
where the controller's heartbeat rule covers a node that freezes without dying.

Lifetime: the actors belong to the controller's Ray job (not detached), so Ray ends them
when the controller's driver goes away, however it goes; ``stop`` ends them sooner.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiperf.common.config import ServiceConfig
from aiperf.errors import MeshError

if TYPE_CHECKING:
    from aiperf.controller.service_manager import PlannedService

# How often the watcher thread looks up from ray.wait to see whether it should stop.
_WATCH_SLICE_S = 0.2

OnExit = Callable[[str, str], None]


class RayLauncher:
    def __init__(self, service_config: ServiceConfig, services: list[PlannedService]) -> None:
        self.service_config = service_config
        self.services = services
        self._actors: dict[str, Any] = {}
        self._calls: dict[Any, str] = {}  # the serve() call's ObjectRef -> service id
        self._where: dict[str, str] = {}
        self._where_calls: dict[str, Any] = {}
        self._placement_group: Any = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- start ------------------------------------------------------------------------

    def start(self) -> None:
        """Join the cluster, reserve a bundle per service, and start every actor."""
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from aiperf.ray.actor import RemoteService

        cfg = self.service_config
        address = cfg.ray_address or "auto"
        try:
            ray.init(address=address, namespace=f"aiperf-{cfg.run_dir.rsplit('-', 1)[-1]}",
                     logging_level=logging.WARNING, log_to_driver=True,
                     configure_logging=False)
        except Exception as exc:
            raise MeshError(f"cannot join the Ray cluster at ray_address={address!r}: "
                            f"{type(exc).__name__}: {exc}") from None
        resources = dict(cfg.ray_worker_resources)
        cpus = resources.pop("CPU", 0.0)
        bundles = [{"CPU": cpus, **resources} if cpus else dict(resources)
                   for _ in self.services]
        self._placement_group = placement_group(bundles, strategy="SPREAD")
        # Revealed for the actors only: they travel through Ray's own (authenticated)
        # control plane, never a log.
        config_json = cfg.model_dump_json(context={"reveal": True})
        actor_class = ray.remote(RemoteService)
        for i, svc in enumerate(self.services):
            actor = actor_class.options(
                name=svc.service_id, num_cpus=cpus, resources=resources or None,
                max_restarts=0, max_concurrency=1,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    self._placement_group, placement_group_bundle_index=i),
            ).remote()
            cls = svc.service_class
            # An actor runs its calls in order, one at a time: ``where`` answers before
            # ``serve`` takes the actor for good.
            self._where_calls[svc.service_id] = actor.where.remote()
            call = actor.serve.remote(config_json, f"{cls.__module__}:{cls.__qualname__}",
                                      svc.service_id, svc.index)
            self._actors[svc.service_id] = actor
            self._calls[call] = svc.service_id
            self._where[svc.service_id] = f"Ray actor {actor._actor_id.hex()[:12]}"

    def wait_placed(self, timeout: float) -> None:
        """Until the cluster has reserved every bundle; a clear error when it has no room."""
        import ray

        try:
            ray.get(self._placement_group.ready(), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise MeshError(
                f"the Ray cluster has no room for {len(self.services)} workers of "
                f"{self.service_config.ray_worker_resources} each within {timeout:g}s; "
                f"it has {ray.available_resources()} available"
            ) from None
        for service_id, where_call in self._where_calls.items():
            try:
                where = ray.get(where_call, timeout=timeout)
            except Exception:  # its death is reported by the watcher
                continue
            self._where[service_id] = (f"node {where['node_ip']}, host {where['host']}, "
                                       f"pid {where['pid']}, Ray actor "
                                       f"{where['actor_id'][:12]}")

    def where(self, service_id: str) -> str:
        return self._where.get(service_id, "")

    # -- watch ------------------------------------------------------------------------

    def watch(self, on_exit: OnExit) -> None:
        """Call ``on_exit(service_id, how)`` from a thread when a service's actor ends."""
        self._watcher = threading.Thread(target=self._watch, args=(on_exit,),
                                         name="aiperf-ray-watch", daemon=True)
        self._watcher.start()

    def _watch(self, on_exit: OnExit) -> None:
        import ray

        pending = list(self._calls)
        while pending and not self._stopping.is_set():
            done, pending = ray.wait(pending, num_returns=1, timeout=_WATCH_SLICE_S)
            for call in done:
                service_id = self._calls[call]
                try:
                    code = ray.get(call)
                    how = f"exited with code {code}"
                except ray.exceptions.RayActorError as exc:
                    how = f"died: {_first_line(exc)}"
                except Exception as exc:
                    how = f"failed: {type(exc).__name__}: {_first_line(exc)}"
                if not self._stopping.is_set():
                    on_exit(service_id, how)

    # -- stop -------------------------------------------------------------------------

    def stop(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the services' own exits, then kill what is left and
        leave the cluster; nothing of this mesh stays on any node."""
        import ray

        self._stopping.set()
        if not ray.is_initialized():
            return
        calls = list(self._calls)
        if calls:
            ray.wait(calls, num_returns=len(calls), timeout=timeout)
        for actor in self._actors.values():
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        if self._placement_group is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(self._placement_group)
            except Exception:
                pass
        if self._watcher is not None:
            self._watcher.join(timeout=1.0)
        # Ends this driver's job: Ray reaps whatever of it is still on any node.
        ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
