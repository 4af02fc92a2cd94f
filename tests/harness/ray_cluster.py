"""A multi-node Ray cluster on one host, inside a private network namespace, for the tests.

Ray binds some of its ports on every interface whatever ``--node-ip-address`` says, so the
cluster lives in a network namespace of its own (``ip netns``; needs root): nothing of it
listens on the host's interfaces, and two clusters never fight over ports. Each node gets a
loopback address of its own (head 127.0.0.1, then 127.0.0.2, .3, ...), so the nodes are
distinct to Ray as on real machines.

Every Ray process descends from a *keeper*: a small child process (this file run as a
script) that marks itself a child subreaper, so whatever Ray leaves orphaned is reparented
to it and reaped, never a zombie of init (which does not reap on this box). The keeper
reads commands on its stdin; when that pipe closes without a ``stop`` (the test process
was SIGKILLed or interrupted) it tears the cluster down by itself: SIGTERM to each node,
SIGKILL to whatever is still in the namespace, then the namespace and the temp dir go.

Usage::

    with RayCluster(nodes=2) as cluster:
        result = cluster.run([sys.executable, "-c", "import ray; ray.init(); ..."])

Joining is authenticated (``RAY_AUTH_MODE=token``, a fresh token per cluster). The token
lives in a 0600 file in the cluster's temp dir and travels as ``RAY_AUTH_TOKEN_PATH``, so
neither ``cluster.env`` nor any command line, log or repr ever holds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

# The keeper runs this file as a script: nothing from the project above this line.

NETNS_PREFIX = "aiperf-ray-"
HEAD_PORT = 6379
_READY_LINE = "Ray runtime started"
_TERM_GRACE_S = 10.0


# --------------------------------------------------------------------------- keeper side


def _netns_pids(netns: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True,
                         timeout=10, check=False)
    return [int(tok) for tok in out.stdout.split() if tok.isdigit()]


def _reap_children(exited: dict[int, int] | None = None) -> None:
    """Reap every exited child (ours or an orphan reparented to us), without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if exited is not None:
            exited[pid] = status


def _has_children() -> bool:
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _teardown(netns: str, temp_dir: str, nodes: list[int]) -> list[int]:
    """Stop the nodes, kill and reap what is left, delete the namespace and the temp dir.
    Returns the pids still in the namespace (empty when it went well)."""
    # A node a test froze (SIGSTOP) would sit out its SIGTERM: thaw everything first.
    for pid in _netns_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    # Workers first, the head last: a worker node whose head is gone retries the GCS
    # instead of exiting.
    for pid in reversed(nodes):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _TERM_GRACE_S
        while time.monotonic() < deadline:
            _reap_children()
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    left: list[int] = []
    deadline = time.monotonic() + _TERM_GRACE_S
    while True:
        left = _netns_pids(netns)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap_children()
        if (not left and not _has_children()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=10,
                   check=False)
    shutil.rmtree(temp_dir, ignore_errors=True)
    return left


def _set_child_subreaper() -> None:
    import ctypes

    from aiperf.common.process import libc

    pr_set_child_subreaper = 36
    if libc().prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def _term_with_keeper() -> None:
    """In a node's ``ray start``, before exec: SIGTERM it (an orderly stop) if the keeper dies
    without tearing down. Set from the keeper's only thread, so it fires only at its exit."""
    from aiperf.common.process import libc

    libc().prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def _keeper_main(netns: str, temp_dir: str) -> int:
    """Spawn nodes on request; reap everything; tear down on ``stop`` or on EOF."""
    _set_child_subreaper()
    # A terminal's Ctrl-C reaches the test process, which then asks for an orderly stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    nodes: list[int] = []
    exited: dict[int, int] = {}
    stdin = sys.stdin.buffer
    buffer = b""
    reply_to_stop = False
    while True:
        ready, _, _ = select.select([stdin], [], [], 0.2)
        _reap_children(exited)
        if not ready:
            continue
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            command = json.loads(line)
            if command["cmd"] == "stop":
                reply_to_stop = True
                break
            if command["cmd"] == "spawn":
                with open(command["log"], "ab") as log:
                    proc = subprocess.Popen(command["argv"], env=command["env"],
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT,
                                            preexec_fn=_term_with_keeper)
                nodes.append(proc.pid)
                _reply({"pid": proc.pid})
        if reply_to_stop:
            break
    left = _teardown(netns, temp_dir, nodes)
    if reply_to_stop:
        _reply({"stopped": True, "left": left})
    return 0


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- test side


class RayClusterError(RuntimeError):
    """The cluster could not start (the message names the node and the log's tail)."""


def prerequisites_missing() -> str | None:
    """Why a netns Ray cluster cannot run here, or None when it can."""
    if sys.platform != "linux":
        return "a netns Ray cluster needs Linux"
    if os.geteuid() != 0:
        return "a netns Ray cluster needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "a netns Ray cluster needs iproute2's `ip`"
    if shutil.which("ss") is None:
        return "a netns Ray cluster needs iproute2's `ss`"
    if not _ray_cli().exists():
        return f"Ray is not installed next to {sys.executable} (the [ray] extra)"
    return None


def _ray_cli() -> Path:
    return Path(sys.executable).parent / "ray"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces and temp dirs of clusters whose test process died (and whose keeper
    could not clean up, e.g. it was SIGKILLed too). Returns the names swept."""
    swept = []
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10, check=False).stdout
    names = {line.split()[0] for line in listed.splitlines() if line.startswith(NETNS_PREFIX)}
    names |= {p.name for p in Path(tempfile.gettempdir()).glob(NETNS_PREFIX + "*")}
    for name in sorted(names):
        match = re.fullmatch(re.escape(NETNS_PREFIX) + r"(\d+)-[0-9a-f]+", name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        if name in listed:
            for pid in _netns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10,
                           check=False)
        shutil.rmtree(Path(tempfile.gettempdir()) / name, ignore_errors=True)
        swept.append(name)
    return swept


class Listener(BaseModel, frozen=True):
    """One listening TCP socket (a row of ``ss -ltnp``)."""

    address: str
    port: int
    process: str
    pids: tuple[int, ...]


class RayNode(BaseModel, frozen=True):
    """A node as ``ray.nodes()`` reports it."""

    ip: str
    node_id: str
    cpus: float


_USERS = re.compile(r'\("([^"]*)",pid=(\d+)')


def parse_ss(text: str) -> list[Listener]:
    """Rows of ``ss -ltnpH`` (state, recv-q, send-q, local, peer[, users])."""
    listeners = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        address, _, port = fields[3].rpartition(":")
        users = _USERS.findall(" ".join(fields[5:]))
        listeners.append(Listener(address=address.strip("[]"), port=int(port),
                                  process=users[0][0] if users else "",
                                  pids=tuple(sorted({int(pid) for _, pid in users}))))
    return listeners


def host_listeners() -> list[Listener]:
    """The TCP listeners of the host's (this process's) network namespace."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10,
                         check=True)
    return parse_ss(out.stdout)


_NODES_SCRIPT = """
import json, sys, time
import ray
expected, deadline = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
ray.init(logging_level="ERROR", log_to_driver=False)
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= expected or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(json.dumps([{"ip": n["NodeManagerAddress"], "node_id": n["NodeID"],
                   "cpus": n["Resources"].get("CPU", 0)} for n in alive]))
"""


class RayCluster:
    """A head and ``nodes - 1`` worker nodes in a fresh network namespace (see the module
    docstring). ``start()``/``stop()`` or a ``with`` block; ``stop`` is idempotent and also
    runs at garbage collection or interpreter exit."""

    def __init__(self, nodes: int = 2, *, num_cpus: int = 2,
                 object_store_mb: int = 128, start_timeout: float = 90.0) -> None:
        if not 1 <= nodes <= 250:
            raise ValueError("nodes must be between 1 and 250")
        self.node_count = nodes
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        self.start_timeout = start_timeout
        self.netns = f"{NETNS_PREFIX}{os.getpid()}-{secrets.token_hex(3)}"
        self.node_ips = [f"127.0.0.{i + 1}" for i in range(nodes)]
        self.address = f"127.0.0.1:{HEAD_PORT}"
        self.temp_dir: Path | None = None
        self.startup_seconds: float | None = None
        self.node_pids_by_ip: dict[str, int] = {}
        # What listened on the host before the cluster, for tests proving it adds nothing.
        self.host_listeners_before: list[Listener] = []
        self._keeper: subprocess.Popen[bytes] | None = None
        self._started: list[subprocess.Popen[Any]] = []
        self._finalizer: weakref.finalize | None = None

    def __repr__(self) -> str:
        return f"RayCluster(netns={self.netns!r}, address={self.address!r}, nodes={self.node_ips})"

    # ---------------------------------------------------------------- environment

    @property
    def env(self) -> dict[str, str]:
        """What a driver inside the namespace needs (``ray.init()`` with no arguments)."""
        if self.temp_dir is None:
            raise RuntimeError("the cluster is not started")
        return {
            "RAY_ADDRESS": self.address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.temp_dir / "auth_token"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def _full_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        merged.update(self.env)
        merged.update(env or {})
        return merged

    # ---------------------------------------------------------------- life cycle

    def __enter__(self) -> RayCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> RayCluster:
        missing = prerequisites_missing()
        if missing:
            raise RayClusterError(missing)
        sweep_stale()
        self.host_listeners_before = host_listeners()
        began = time.monotonic()
        deadline = began + self.start_timeout
        # Ray's unix sockets live under the temp dir, and a socket path has at most 107
        # bytes: keep the dir short and named after the namespace (the sweep finds both).
        self.temp_dir = Path(tempfile.gettempdir()) / self.netns
        self.temp_dir.mkdir(mode=0o700)
        token = self.temp_dir / "auth_token"
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
        # The keeper first: from here on, whatever fails, it (or the finalizer) removes
        # the temp dir and the namespace.
        keeper = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--keeper", self.netns,
             str(self.temp_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self._keeper = keeper
        self._finalizer = weakref.finalize(self, _finalize, keeper, self.netns,
                                           str(self.temp_dir), self._started)
        try:
            self._ip("netns", "add", self.netns)
            self._ip("netns", "exec", self.netns, "ip", "link", "set", "lo", "up")
            for ip in self.node_ips[1:]:
                self._ip("netns", "exec", self.netns, "ip", "addr", "add", f"{ip}/8", "dev", "lo")
            self._start_node(0, deadline)
            # The worker nodes join in parallel: each `ray start` takes seconds of CPU.
            for index in range(1, self.node_count):
                self._spawn_node(index)
            for index in range(1, self.node_count):
                self._wait_node_ready(index, deadline)
            alive = self.nodes(timeout=max(1.0, deadline - time.monotonic()))
            if sorted(n.ip for n in alive) != sorted(self.node_ips):
                raise RayClusterError(f"alive nodes {alive}, expected {self.node_ips}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _ip(self, *args: str) -> None:
        out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10,
                             check=False)
        if out.returncode != 0:
            raise RayClusterError(f"ip {' '.join(args)}: {out.stderr.strip()}")

    def _node_argv(self, index: int) -> list[str]:
        ip = self.node_ips[index]
        argv = [str(_ray_cli()), "start", "--block", f"--node-ip-address={ip}",
                f"--num-cpus={self.num_cpus}",
                f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
                # A temp dir per node: two nodes starting at once in one session dir race
                # for the same socket names, and one of them times out.
                f"--temp-dir={self.temp_dir / f'n{index}'}", "--disable-usage-stats"]
        if index == 0:
            return [*argv, "--head", f"--port={HEAD_PORT}", "--include-dashboard=false"]
        return [*argv, f"--address={self.address}"]

    def _log(self, index: int) -> Path:
        assert self.temp_dir is not None
        return self.temp_dir / f"node{index}.log"

    def _spawn_node(self, index: int) -> None:
        env = self._full_env(None)
        env.pop("RAY_ADDRESS")  # a node's `ray start` takes the address as a flag
        argv = ["ip", "netns", "exec", self.netns, *self._node_argv(index)]
        reply = self._command({"cmd": "spawn", "argv": argv, "env": env,
                               "log": str(self._log(index))}, timeout=10)
        # `ip netns exec` execs the command: the pid is the node's `ray start` itself.
        self.node_pids_by_ip[self.node_ips[index]] = int(reply["pid"])

    def _start_node(self, index: int, deadline: float) -> None:
        self._spawn_node(index)
        self._wait_node_ready(index, deadline)

    def _wait_node_ready(self, index: int, deadline: float) -> None:
        pid = self.node_pids_by_ip[self.node_ips[index]]
        log = self._log(index)
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if _READY_LINE in text:
                return
            if not _pid_alive(pid) or _is_zombie(pid):
                raise RayClusterError(
                    f"node {self.node_ips[index]} exited while starting:\n{_tail(text)}")
            if time.monotonic() > deadline:
                raise RayClusterError(
                    f"node {self.node_ips[index]} not ready within {self.start_timeout} s:\n"
                    f"{_tail(text)}")
            time.sleep(0.1)

    def _command(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        keeper = self._keeper
        if keeper is None or keeper.stdin is None or keeper.stdout is None:
            raise RayClusterError("the keeper is not running")
        keeper.stdin.write(json.dumps(command).encode() + b"\n")
        keeper.stdin.flush()
        ready, _, _ = select.select([keeper.stdout], [], [], timeout)
        if not ready:
            raise RayClusterError(f"the keeper did not answer {command['cmd']!r} in {timeout} s")
        line = keeper.stdout.readline()
        if not line:
            raise RayClusterError(f"the keeper exited ({keeper.poll()})")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> list[int]:
        """Tear everything down; returns the pids that could not be killed (empty when clean)."""
        keeper, self._keeper = self._keeper, None
        left: list[int] = []
        if keeper is not None:
            try:
                reply = self._command_stop(keeper)
                left = list(reply.get("left", []))
            except (OSError, ValueError, RayClusterError):
                left = []
        if self._finalizer is not None:
            self._finalizer()  # whatever the keeper could not do, and reaping our drivers
        return left

    def _command_stop(self, keeper: subprocess.Popen[bytes]) -> dict[str, Any]:
        assert keeper.stdin is not None and keeper.stdout is not None
        try:
            keeper.stdin.write(b'{"cmd": "stop"}\n')
            keeper.stdin.flush()
        except BrokenPipeError:
            return {}
        # The nodes get _TERM_GRACE_S each, then the namespace gets one more.
        timeout = _TERM_GRACE_S * (self.node_count + 1) + 10
        ready, _, _ = select.select([keeper.stdout], [], [], timeout)
        reply: dict[str, Any] = json.loads(keeper.stdout.readline() or b"{}") if ready else {}
        with contextlib.suppress(subprocess.TimeoutExpired):
            keeper.wait(timeout=5)
        return reply

    # ---------------------------------------------------------------- inside the namespace

    def run(self, argv: Sequence[str], *, timeout: float,
            env: Mapping[str, str] | None = None, check: bool = False,
            cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace with ``env`` over ``self.env``; text output."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv],
                              env=self._full_env(env), capture_output=True, text=True,
                              timeout=timeout, check=check, cwd=cwd)

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside the namespace; ``stop()`` kills and reaps it if still running."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv],
                                env=self._full_env(env), **kwargs)
        self._started.append(proc)
        return proc

    def nodes(self, timeout: float = 30.0) -> list[RayNode]:
        """The alive nodes as Ray sees them, waiting up to ``timeout`` for all of them."""
        out = self.run([sys.executable, "-c", _NODES_SCRIPT, str(self.node_count),
                        str(timeout)], timeout=timeout + 30)
        if out.returncode != 0:
            raise RayClusterError(f"ray.nodes() failed ({out.returncode}):\n{_tail(out.stderr)}")
        return [RayNode(**node) for node in json.loads(out.stdout.strip().splitlines()[-1])]

    @property
    def keeper_pid(self) -> int | None:
        return self._keeper.pid if self._keeper is not None else None

    def pids(self) -> list[int]:
        """Every process in the namespace."""
        return _netns_pids(self.netns)

    def node_pids(self, node_ip: str) -> list[int]:
        """The raylet of ``node_ip`` and its descendants (agents, workers, actors): what a
        test SIGSTOPs or SIGKILLs to freeze or kill a node. Excludes the node's GCS (the
        head's cluster-wide service) and its ``ray start``."""
        import psutil

        flag = f"--node_ip_address={node_ip}"
        for pid in self.pids():
            try:
                proc = psutil.Process(pid)
                cmdline = proc.cmdline()
            except psutil.NoSuchProcess:
                continue
            if cmdline and cmdline[0].endswith("/raylet") and flag in cmdline:
                try:
                    return [pid, *(c.pid for c in proc.children(recursive=True))]
                except psutil.NoSuchProcess:
                    return []
        return []

    def listeners(self) -> list[Listener]:
        """The TCP listeners inside the namespace (``ss -ltnp``, parsed)."""
        out = self.run(["ss", "-ltnpH"], timeout=10, check=True)
        return parse_ss(out.stdout)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _finalize(keeper: subprocess.Popen[bytes], netns: str, temp_dir: str,
              started: list[subprocess.Popen[Any]]) -> None:
    """Last resort, also at interpreter exit: close the keeper's stdin (it then tears down
    by itself), wait for it, and do its job here if it is gone or stuck."""
    if keeper.poll() is None:
        with contextlib.suppress(OSError):
            if keeper.stdin is not None:
                keeper.stdin.close()
        try:
            keeper.wait(timeout=_TERM_GRACE_S * 3 + 10)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()
    for stream in (keeper.stdin, keeper.stdout):
        with contextlib.suppress(OSError):
            if stream is not None:
                stream.close()
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    if Path("/run/netns", netns).exists():
        for pid in _netns_pids(netns):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True, timeout=10,
                       check=False)
    shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--keeper":
        sys.exit(_keeper_main(sys.argv[2], sys.argv[3]))
    sys.exit("usage: ray_cluster.py --keeper NETNS TEMP_DIR (started by RayCluster)")
