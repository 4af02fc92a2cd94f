"""Driver programs for the Ray backend's tests, and the test side's handle on them.

A driver is the host of a mesh, so it must run inside the cluster's network namespace
(``RayCluster.popen``): ``python -m tests.integration.ray.drivers <name> <json args>``. It
talks to the test over its pipes: each event is one stdout line ``@@ {"event": ...}``
(anything else on stdout is Ray's or the mesh's chatter and is ignored), and the test
steers it with one word a line on its stdin. A driver whose stdin closes exits, so a test
that fails half-way never leaves one waiting.

Drivers:

- ``profile``: a local mesh and a ray mesh run the same profile against one mock server;
  the ray mesh then runs again while two peers with the wrong keys try to join. Reports
  ``compared`` and ``intruded``, then ``up`` (the mesh running, its ports) and waits for
  ``shutdown``; reports ``down`` and waits for ``exit``.
- ``hold``: a ray mesh starts a long duration run and reports ``running``; the test breaks
  something; the driver reports how the run ended (``ended``) and, once that mesh is shut
  down, ``closed``. On ``again`` it starts a fresh mesh on the same cluster and reports a
  short run (``again``).
- ``cli``: ``aiperf profile --ray-address`` against a mock server, artifacts to a dir.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARK = "@@ "
# The mock's configured timing: what every ray and local run below is checked against.
MOCK = {"ttft_ms": 20.0, "itl_ms": 2.0, "tokens": 16}
# Two peers with the wrong keys come from addresses no mesh process uses, so a refusal
# line naming one of them can only be about that peer.
INTRUDER_OTHER_KEYS = "127.0.0.77"
INTRUDER_OTHER_CLIENT = "127.0.0.78"


# --------------------------------------------------------------------------- driver side


def _emit(event: str, **data: Any) -> None:
    sys.stdout.write(MARK + json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


def _wait_word(expected: set[str]) -> str:
    """The next word from the test; EOF (the test went away) ends the driver at once."""
    while True:
        line = sys.stdin.readline()
        if not line:
            raise SystemExit(0)
        word = line.strip()
        if word in expected:
            return word


def _summary(result: Any) -> dict[str, Any]:
    """What the tests check of one run, JSON-shaped."""
    workers: dict[str, int] = {}
    for record in result.records:
        worker = record["metadata"]["worker_id"]
        workers[worker] = workers.get(worker, 0) + 1
    p50 = {tag: result[tag].p50 for tag in
           ("time_to_first_token", "inter_token_latency", "request_latency") if tag in result}
    return {"request_count": result.request_count, "error_count": result.error_count,
            "records": len(result.records), "invariant_ok": bool(result.invariant.get("ok")),
            "workers": workers, "clock_offsets": result.clock_offsets, "p50": p50,
            "errors": result.error_lines()}


def _mock() -> Any:
    from aiperf.mock_server.config import MockServerConfig
    from aiperf.mock_server.server import MockServerProcess

    server = MockServerProcess(MockServerConfig(**MOCK))
    server.start()
    return server


class _LogLines(logging.Handler):
    """Keeps the mesh's relayed log lines (logger ``aiperf.mesh``) for the driver to search."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.lines.append(record.getMessage())

    def matching(self, text: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if text in line]


def _capture_mesh_logs() -> _LogLines:
    handler = _LogLines()
    logger = logging.getLogger("aiperf.mesh")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


def _intrude(address: str, source_ip: str, keys: Any, stop: threading.Event) -> None:
    """A peer that tries to join ``address`` with ``keys`` (not the mesh's) from
    ``source_ip``, sending a registration as a worker would, until ``stop``."""
    import zmq

    from aiperf.common.curve import apply_keys
    from aiperf.common.messages import RegisterMessage

    host, _, port = address.removeprefix("tcp://").rpartition(":")
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDTIMEO, 100)
        apply_keys(sock, keys, server=False)
        # libzmq's "source;destination" form: the connection comes from source_ip.
        sock.connect(f"tcp://{source_ip}:0;{host}:{port}")
        hello = RegisterMessage(service_id="worker_99", service_type="worker",
                                pid=os.getpid()).encode()
        while not stop.is_set():
            try:
                sock.send_multipart(hello, flags=zmq.DONTWAIT)
            except zmq.Again:
                pass  # never admitted: nothing is ever sent
            stop.wait(0.1)
    finally:
        sock.close(0)
        context.term()


def drive_profile(args: dict[str, Any]) -> None:
    from aiperf.common.curve import MeshKeys
    from aiperf.mesh import Mesh

    profile = {"concurrency": 8, "request_count": args["requests"], "streaming": True,
               "osl": MOCK["tokens"]}
    logs = _capture_mesh_logs()
    server = _mock()
    try:
        with Mesh(workers=2) as local:
            local_result = _summary(local.run(url=server.url, **profile))
        began = time.monotonic()
        with Mesh(backend="ray", ray_address=args["address"], workers=2,
                  capture_logs=True) as mesh:
            ready_s = time.monotonic() - began
            ray_result = _summary(mesh.run(url=server.url, **profile))
            _emit("compared", local=local_result, ray=ray_result, locations=mesh.locations,
                  ready_s=ready_s)

            # Two peers with the wrong keys during a run: one with another mesh's keys
            # altogether, one that knows this mesh's server key (it is public) but holds a
            # client key of its own. The run must not notice either.
            other = MeshKeys.generate()
            assert mesh.service_config.mesh_keys is not None
            own_client = other.model_copy(
                update={"server_public": mesh.service_config.mesh_keys.server_public})
            outcome: dict[str, Any] = {}
            running = threading.Event()
            done = threading.Event()

            def run() -> None:
                try:
                    running.set()
                    outcome["result"] = _summary(mesh.run(
                        url=server.url, **{**profile, "request_count": args["requests"] * 2}))
                except Exception as exc:
                    outcome["error"] = f"{type(exc).__name__}: {exc}"
                finally:
                    done.set()

            runner = threading.Thread(target=run)
            runner.start()
            running.wait(10)
            stop = threading.Event()
            intruders = [
                threading.Thread(target=_intrude, args=(
                    mesh.service_config.address("control"), INTRUDER_OTHER_KEYS, other, stop)),
                threading.Thread(target=_intrude, args=(
                    mesh.service_config.address("credits"), INTRUDER_OTHER_CLIENT,
                    own_client, stop)),
            ]
            for thread in intruders:
                thread.start()
            deadline = time.monotonic() + 10
            refusals: dict[str, list[str]] = {}
            refused_while_running = True
            while time.monotonic() < deadline:
                refusals = {ip: logs.matching(f"refused a peer at {ip}")
                            for ip in (INTRUDER_OTHER_KEYS, INTRUDER_OTHER_CLIENT)}
                if all(refusals.values()):
                    break
                time.sleep(0.05)
            refused_while_running = not done.is_set()
            stop.set()
            for thread in intruders:
                thread.join(10)
            runner.join(60)
            _emit("intruded", refusals=refusals, refused_while_running=refused_while_running,
                  **outcome)

            _emit("up", ports=sorted(mesh.service_config.tcp_ports.values()),
                  tcp_host=mesh.service_config.tcp_host, controller_pid=mesh.pid,
                  locations=mesh.locations)
            _wait_word({"shutdown"})
        _emit("down")
        _wait_word({"exit"})
    finally:
        server.stop()


def drive_hold(args: dict[str, Any]) -> None:
    from aiperf.mesh import Mesh

    server = _mock()
    try:
        mesh = Mesh(backend="ray", ray_address=args["address"], workers=2, capture_logs=True,
                    worker_silence_timeout=args.get("silence", 5.0)).start()
        try:
            working = threading.Event()

            def progress(update: Any) -> None:
                if update.records > 0:
                    working.set()

            outcome: dict[str, Any] = {}

            def run() -> None:
                try:
                    outcome["result"] = _summary(mesh.run(
                        url=server.url, concurrency=4, benchmark_duration=60,
                        streaming=True, progress=progress))
                except Exception as exc:
                    outcome["error"] = str(exc)
                    outcome["type"] = type(exc).__name__
                outcome["at"] = time.monotonic()

            runner = threading.Thread(target=run, daemon=True)
            runner.start()
            # Records coming in: both workers are in the run's hot path now.
            working.wait(10)
            _emit("running", locations=mesh.locations, controller_pid=mesh.pid,
                  working=working.is_set())
            runner.join(120)
            _emit("ended", **outcome)
        finally:
            mesh.shutdown()
        _emit("closed")
        if _wait_word({"again", "exit"}) == "again":
            began = time.monotonic()
            with Mesh(backend="ray", ray_address=args["address"], workers=2,
                      capture_logs=True) as fresh:
                ready_s = time.monotonic() - began
                _emit("again", locations=fresh.locations, ready_s=ready_s, **_summary(fresh.run(
                    url=server.url, concurrency=4, request_count=50, streaming=True)))
            _wait_word({"exit"})
    finally:
        server.stop()


def drive_cli(args: dict[str, Any]) -> None:
    server = _mock()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "aiperf", "profile", "--ray-address", args["address"],
             "-u", server.url, "--streaming", "--concurrency", "4",
             "--osl", str(MOCK["tokens"]), "--request-count", str(args["requests"]),
             "--workers-per-node", "1",
             "--output-artifact-dir", args["out"]],
            capture_output=True, text=True, timeout=120)
        _emit("cli", returncode=done.returncode, stdout=done.stdout[-4000:],
              stderr=done.stderr[-4000:])
    finally:
        server.stop()


DRIVERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "profile": drive_profile, "hold": drive_hold, "cli": drive_cli,
}


def main() -> None:
    import faulthandler

    # A stuck driver's stacks on demand, for a test's failure message (Driver.tail).
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    name, raw = sys.argv[1], sys.argv[2]
    DRIVERS[name](json.loads(raw))


# --------------------------------------------------------------------------- test side


class DriverError(AssertionError):
    """The driver did not say what the test waited for (its output tail says why)."""


class Driver:
    """A driver started inside the cluster's namespace, with deadlines on every wait."""

    def __init__(self, cluster: Any, name: str, **args: Any) -> None:
        self.name = name
        root = Path(__file__).resolve().parents[3]
        self.proc = cluster.popen(
            [sys.executable, "-u", "-m", "tests.integration.ray.drivers", name,
             json.dumps(args)],
            env={"PYTHONPATH": str(root)}, cwd=str(root), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self._buffer = b""
        self._other: list[str] = []
        self._stderr: list[str] = []
        self._stderr_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_reader.start()

    @property
    def pid(self) -> int:
        # `ip netns exec` execs the command: this is the driver's own pid.
        return int(self.proc.pid)

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip("\n"))
            del self._stderr[:-200]

    def tail(self) -> str:
        return "\n".join([*self._other[-20:], *self._stderr[-60:]])

    def stacks(self) -> str:
        """The driver's thread stacks (faulthandler, on SIGUSR1), for a stuck driver."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
        return self.tail()

    def _line(self, deadline: float) -> str | None:
        """The next stdout line, or None at the deadline; "" at EOF. Reads the pipe's
        descriptor itself: a buffered reader would hide lines from select()."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                rest, self._buffer = self._buffer, b""
                return rest.decode(errors="replace")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace") + "\n"

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The driver's next event, which must be ``event``, within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            if line is None:
                raise DriverError(f"driver {self.name!r}: no {event!r} within {timeout:g}s; "
                                  f"its output and stacks:\n{self.stacks()}")
            if not line:
                self.proc.wait(5)
                raise DriverError(f"driver {self.name!r} exited ({self.proc.returncode}) "
                                  f"before {event!r}; its output:\n{self.tail()}")
            if not line.startswith(MARK):
                self._other.append(line.rstrip("\n"))
                continue
            message: dict[str, Any] = json.loads(line[len(MARK):])
            if message["event"] != event:
                raise DriverError(f"driver {self.name!r}: {message['event']!r} where "
                                  f"{event!r} was due: {message}\n{self.tail()}")
            return message

    def say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 30.0) -> int:
        """Close its stdin (it exits), wait for it, kill it past ``timeout``."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            return self.proc.wait(10)


def remote_service_pids(pids: list[int]) -> list[int]:
    """Those of ``pids`` that are a mesh's Ray actor (process title ``ray::RemoteService``)."""
    import psutil

    found = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            text = " ".join([proc.name(), *proc.cmdline()])
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if "RemoteService" in text:
            found.append(pid)
    return found


if __name__ == "__main__":
    main()
