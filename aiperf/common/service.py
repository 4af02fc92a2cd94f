"""``BaseComponentService``: the life of one service process.

    connect sockets -> @on_init -> subscribe @on_message types -> register
    -> @on_start -> background tasks -> ... -> shutdown -> @on_stop -> close sockets

Messages from the controller (DEALER) and from the bus (SUB) go through the same dispatch:
a handler is found by ``message_type``; for a ``Command`` its return value (a dict) or its
exception travels back to the controller as a ``CommandAck``. Anything that escapes a hook
is reported as a ``ServiceErrorMessage`` with the traceback, so the host can name the
service that failed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any, ClassVar

from aiperf.common.comms import FATAL_LINGER_MS, LINGER_MS, ServiceComms
from aiperf.common.config import ServiceConfig
from aiperf.common.heap import can_trim, trim_heap_periodically
from aiperf.common.hooks import BoundHook, HookKind, collect_hooks
from aiperf.common.logging import AIPerfLoggerMixin
from aiperf.common.messages import (
    Command,
    CommandAck,
    Message,
    MessageType,
    RegisterMessage,
    ServiceErrorMessage,
    ServiceHeartbeat,
)
from aiperf.errors import ConfigError, ErrorDetails


class BaseComponentService(AIPerfLoggerMixin):
    """Subclass, decorate methods with the hooks of ``aiperf.common.hooks``, and list the
    class in ``plugins.yaml`` under ``service``."""

    service_type: ClassVar[str] = "service"
    _hooks: ClassVar[list[BoundHook]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._hooks = collect_hooks(cls)

    def __init__(self, service_config: ServiceConfig, service_id: str, index: int = 0) -> None:
        self.service_config = service_config
        self.service_id = service_id
        self.index = index
        self.nice = 0  # set by the service manager's bootstrap; applied once initialised
        self.logger_name = f"aiperf.{service_id}"
        self.comms: ServiceComms | None = None
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[MessageType, list[str]] = {}
        for hook in self._hooks:
            if hook.spec.kind is HookKind.ON_MESSAGE:
                for mt in hook.spec.message_types:
                    self._handlers.setdefault(mt, []).append(hook.name)

    # -- public API for subclasses --------------------------------------------------------

    async def publish(self, message: Message) -> None:
        """Put a message on the bus for every subscriber."""
        assert self.comms is not None
        message.service_id = self.service_id
        await self.comms.publish(message)

    async def send_to_controller(self, message: Message) -> None:
        assert self.comms is not None
        message.service_id = self.service_id
        await self.comms.send_control(message)

    def spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        """Start a task whose failure is reported as this service's error."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    async def report_error(self, exc: BaseException, fatal: bool = True) -> None:
        self.error(lambda: f"{type(exc).__name__}: {exc}")
        details = ErrorDetails.from_exception(exc, service_id=self.service_id)
        await self.send_to_controller(ServiceErrorMessage(error=details, fatal=fatal))

    def stop(self) -> None:
        self._stopped.set()

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> int:
        """Run until shut down; returns the process exit code."""
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            # (A host that runs services on another thread, or several in one loop as the
            # scale tests do, keeps its own handlers.)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        cfg = self.service_config
        self.comms = ServiceComms(self.service_id, cfg.address, record_hwm=cfg.record_hwm,
                                  keys=cfg.mesh_keys)
        code = 0
        try:
            await self._run_hooks(HookKind.ON_INIT)
            for message_type in self._handlers:
                self.comms.subscribe(message_type.value)
            self.spawn(self._receive_loop(self.comms.control), name="control-recv")
            self.spawn(self._receive_loop(self.comms.bus_sub), name="bus-recv")
            if self.nice:
                # Only once initialised: niced through start-up, the service would be the
                # last to register and hold up the mesh while every process wants a core.
                os.nice(self.nice)
            await self.send_to_controller(
                RegisterMessage(service_type=self.service_type, pid=os.getpid())
            )
            await self._run_hooks(HookKind.ON_START)
            if cfg.remote_workers():
                # The controller cannot watch a process on another host: it hears this.
                self.spawn(self._heartbeats(), name="heartbeats")
            for hook in self._hooks:
                if hook.spec.kind is HookKind.BACKGROUND_TASK:
                    self.spawn(self._every(hook), name=hook.name)
            if can_trim():  # long runs: freed heap pages go back (aiperf.common.heap)
                self.spawn(trim_heap_periodically(), name="heap-trim")
            await self._stopped.wait()
        except Exception as exc:
            code = 1
            await self.report_error(exc)
        finally:
            await self._shutdown(fatal=code != 0)
        return code

    async def _heartbeats(self) -> None:
        while True:
            await self.send_to_controller(ServiceHeartbeat())
            await asyncio.sleep(self.service_config.heartbeat_interval)

    async def _shutdown(self, fatal: bool = False) -> None:
        try:
            await asyncio.wait_for(
                self._run_hooks(HookKind.ON_STOP), self.service_config.shutdown_timeout
            )
        except Exception as exc:  # stopping must finish even when a hook fails
            self.error(f"on_stop failed: {exc!r}")
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.comms is not None:
            self.comms.close(FATAL_LINGER_MS if fatal else LINGER_MS)

    async def _run_hooks(self, kind: HookKind) -> None:
        for hook in self._hooks:
            if hook.spec.kind is kind:
                await getattr(self, hook.name)()

    async def _every(self, hook: BoundHook) -> None:
        interval = hook.spec.interval or 1.0
        method = getattr(self, hook.name)
        while not self._stopped.is_set():
            await method()
            await asyncio.sleep(interval)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        assert exc is not None
        asyncio.get_running_loop().create_task(self._fail(exc))

    async def _fail(self, exc: BaseException) -> None:
        await self.report_error(exc)
        self.stop()

    async def _receive_loop(self, sock: Any) -> None:
        from aiperf.common.comms import decode

        while True:
            frames = await sock.recv_multipart()
            await self._dispatch(decode(frames))

    async def _dispatch(self, message: Message) -> None:
        names = self._handlers.get(message.message_type, [])
        if isinstance(message, Command):
            ack = CommandAck(command_id=message.command_id)
            try:
                for name in names:
                    payload = await getattr(self, name)(message)
                    if payload:
                        ack.payload.update(payload)
            except Exception as exc:
                # A configuration error is the user's, not the service's: the host prints
                # it once as "invalid configuration"; an ERROR line here said it twice.
                log = self.debug if isinstance(exc, ConfigError) else self.error
                log(f"{message.message_type.value} failed: {exc!r}")
                ack.error = ErrorDetails.from_exception(exc, service_id=self.service_id)
            await self.send_to_controller(ack)
            if message.message_type is MessageType.SHUTDOWN:
                self.stop()
            return
        for name in names:
            await getattr(self, name)(message)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.service_id}>"
