"""Many simulated workers against one controller: the controller side at scale, on 2 cores.

A mesh with ``backend="external"`` forks no workers; its controller waits for ``workers``
of them to register, and whoever starts them connects them to the mesh's TCP addresses
with its CURVE keys. ``SimWorkers`` is that whoever: one child process that runs N real
``aiperf.services.worker.Worker`` services (ids ``worker_0``..``worker_{N-1}``) as
coroutines on ONE event loop. Their transport (``InstantTransport``, URL scheme ``sim``)
answers every request at once with a canned OpenAI response, so no HTTP server and no
socket per request is involved: what the simulation exercises and measures is the mesh
side (credits and leases from the timing manager, raw records to the record processors,
metrics to the records manager, control and heartbeats to the controller), with N real
worker connections.

    mesh = Mesh(backend="external", workers=64).launch()
    with SimWorkers(mesh.service_config):
        mesh.wait_ready()
        result = mesh.run(url=SIM_URL, concurrency=128, request_count=5000)
    mesh.shutdown()

or ``with simulated_mesh(64) as (mesh, sim): ...``. The child dies with the process that
started it (a pidfd watch), and gets the mesh's ServiceConfig, keys revealed, on its stdin
(never in its environment or command line).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from aiperf.common.codec import RawRecord
from aiperf.common.config import ServiceConfig

SIM_SCHEME = "sim"
SIM_URL = f"{SIM_SCHEME}://instant"
_REPO = Path(__file__).resolve().parents[2]

_perf_ns = time.perf_counter_ns

# A whole non-streamed chat completion with usage: the record processor derives real
# metrics from it (output tokens from usage, no tokenizer on the record path).
_BODY = json.dumps({
    "id": "sim", "object": "chat.completion", "created": 0, "model": "sim",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "one two three four"}}],
    "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
}).encode()


def _event(content: str) -> bytes:
    return b"data: " + json.dumps({
        "id": "sim", "object": "chat.completion.chunk", "created": 0, "model": "sim",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}],
    }).encode() + b"\n\n"


_STREAM = [_event(word) for word in ("one", " two", " three", " four")]
_STREAM_END = b"data: " + json.dumps({
    "id": "sim", "object": "chat.completion.chunk", "created": 0, "model": "sim",
    "choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
}).encode() + b"\n\ndata: [DONE]\n\n"


class InstantTransport:
    """A transport plugin that answers at once: the worker's whole request path runs, its
    records are real, and the only thing missing is the network and a server.

    ``send`` yields to the event loop once, as a real exchange does at least once (the
    request is written, the answer read later): a slot loop that never yielded would spend
    a whole lease without letting the worker's other tasks (lease reports, record
    flushes, the credit channel) run. Streamed responses come as one read per event."""

    def __init__(self, timeout_seconds: float, max_connections: int,
                 first_byte_timeout_seconds: float | None = None) -> None:
        self.timeout_seconds = timeout_seconds
        self.max_connections = max_connections
        self.first_byte_timeout_seconds = first_byte_timeout_seconds

    async def start(self, headers: Mapping[str, str] | None = None) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, record: RawRecord, url: str, headers: dict[str, str], body: bytes,
                   streaming: bool) -> None:
        start = _perf_ns()
        record.start_ns = record.sent_ns = start
        record.wall_start_ns = time.time_ns()
        await asyncio.sleep(0)
        now = _perf_ns()
        record.response_ns = now
        record.status = 200
        if streaming:
            record.chunks.extend((now, event) for event in (*_STREAM, _STREAM_END))
        else:
            record.chunks.append((now, _BODY))
        record.end_ns = _perf_ns()


def register_instant_transport() -> None:
    """Serve the ``sim`` scheme with ``InstantTransport`` in this process."""
    from aiperf.plugin import PluginType, plugins

    plugins.register(PluginType.TRANSPORT, SIM_SCHEME, InstantTransport,
                     metadata={"schemes": [SIM_SCHEME]})


class SimWorkers:
    """The child process of ``count`` simulated workers (ids from ``first``) for a mesh
    whose controller waits for them (``backend="external"``, started with ``launch``)."""

    def __init__(self, service_config: ServiceConfig, count: int | None = None,
                 first: int = 0) -> None:
        if service_config.comm_backend != "tcp" or not service_config.tcp_ports:
            raise ValueError("SimWorkers needs a launched mesh's config (TCP addresses): "
                             "use mesh.service_config after Mesh(backend='external').launch()")
        self.service_config = service_config
        self.count = service_config.workers - first if count is None else count
        self.first = first
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"SimWorkers(worker_{self.first}..worker_{self.first + self.count - 1})"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def __enter__(self) -> SimWorkers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> SimWorkers:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(_REPO), *(p for p in sys.path if p)])
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.sim_workers", str(os.getpid()),
             str(self.first), str(self.count)],
            stdin=subprocess.PIPE, env=env, cwd=_REPO)
        assert self._process.stdin is not None
        # The keys travel revealed through the pipe only: not in the environment, which
        # other processes of the same user can read, nor on the command line.
        self._process.stdin.write(
            self.service_config.model_dump_json(context={"reveal": True}).encode())
        self._process.stdin.close()
        return self

    def wait(self, timeout: float) -> int | None:
        """The child's exit code once the mesh has shut its workers down, or None."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int | None:
        """Wait for the workers to leave (the mesh's shutdown tells them), then SIGTERM,
        then SIGKILL; the child is reaped either way. Returns its exit code."""
        proc = self._process
        if proc is None:
            return None
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and proc.poll() is None:
                proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout / 2 if sig is not signal.SIGKILL else timeout)
                break
        return proc.returncode


@contextlib.contextmanager
def simulated_mesh(workers: int, **service_overrides: Any) -> Iterator[tuple[Any, SimWorkers]]:
    """A mesh of the external backend whose ``workers`` are simulated, ready to run."""
    from aiperf.mesh import Mesh

    mesh = Mesh(backend="external", workers=workers, **service_overrides)
    mesh.launch()
    sim: SimWorkers | None = None
    try:
        sim = SimWorkers(mesh.service_config).start()
        mesh.wait_ready()
        yield mesh, sim
    finally:
        mesh.shutdown()
        if sim is not None:
            sim.stop()


# --------------------------------------------------------------------------- the child


async def _serve(service_config: ServiceConfig, first: int, count: int) -> int:
    from aiperf.services.worker import Worker

    workers = [Worker(service_config, f"worker_{i}", i) for i in range(first, first + count)]
    codes = await asyncio.gather(*(worker.run() for worker in workers),
                                 return_exceptions=True)
    failures = [code for code in codes if code != 0]
    return 1 if failures else 0


def _main(argv: list[str]) -> int:
    from aiperf.common.logging import configure_logging
    from aiperf.common.process import kill_self_when_exits, open_parent_pidfd, run_event_loop

    parent, first, count = (int(arg) for arg in argv)
    kill_self_when_exits(open_parent_pidfd(parent))
    service_config = ServiceConfig.model_validate_json(sys.stdin.buffer.read())
    configure_logging(service_config.log_level, "sim_workers")
    if service_config.runtime_plugins:
        # What the host registered at run time (an endpoint plugin of a test), as the
        # controller does for the services it forks.
        from aiperf.plugin import plugins
        from aiperf.plugin.registry import RUNTIME

        plugins.ensure_loaded()
        plugins.load_mapping(service_config.runtime_plugins, source="host", origin=RUNTIME)
    register_instant_transport()
    # The services run on a thread of their own: several services on one loop must not
    # each take the process's signal handlers (the last would win), so none does
    # (BaseComponentService.run leaves signals to the host off the main thread), and a
    # SIGTERM here ends the process at once.
    result: list[int] = []
    thread = threading.Thread(
        target=lambda: result.append(run_event_loop(_serve(service_config, first, count))),
        name="sim-workers")
    thread.start()
    thread.join()
    return result[0] if result else 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
