"""Whether the client's box starved the client during a measurement, as the kernel saw it.

The reference server witnesses its own side (``ServerStats.late_ms`` / ``stalls_ms``), but a
client process can be kept off the CPU while the server runs on time: at c=16 every
response of a wave arrives within a millisecond or two, so one preemption of the worker
then stamps all sixteen late, and the median with them. The engine cannot see that itself
(its stamps are late because it was not running), and its own event-loop lag probe
(``aiperf.validity``) cannot tell a loop busy with the engine's work from a process the
kernel did not run.

The kernel can: ``/proc/<pid>/schedstat``'s second field is the time the task spent
runnable but waiting on a run queue (``run_delay``). CPU the engine burns itself is not in
it, so a slow parse or a busy loop in a worker is not excused; only time another process
held the CPU is. A sampler thread reads it every ``SAMPLE_S`` for every process under this
test process (the engine's host and services, a CLI or pytest subprocess, and the test
process itself, the bare client of test_reference_servers.py), except the reference
servers, which witness themselves. The worst wait of any client process within one sample
is the figure: more than ``compare.STARVED_MS`` (the tightest tolerance, c=1's) and the box
could not run the client on time, so the run says nothing about the engine.

Linux only (and only with schedstat in /proc): elsewhere ``worst_wait_ms`` stays None and
only the server can call a retry.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from tests.harness.reference_servers import running_pids

SAMPLE_S = 0.01
# The process tree is walked this often (a new CLI process and its mesh appear mid-run);
# the run delays of the known processes are read every sample.
TREE_EVERY = 10
JOIN_TIMEOUT_S = 2.0
_PROC = Path("/proc")


def available() -> bool:
    return (_PROC / str(os.getpid()) / "schedstat").exists()


def _children(pid: int) -> list[int]:
    """The direct children of every thread of ``pid`` (threads spawn processes too)."""
    found: list[int] = []
    try:
        tasks = os.listdir(_PROC / str(pid) / "task")
    except OSError:
        return found
    for tid in tasks:
        try:
            found += [int(c) for c in (_PROC / str(pid) / "task" / tid / "children")
                      .read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def _tree(root: int, excluded: frozenset[int]) -> list[int]:
    """``root`` and its descendants, without ``excluded`` (and theirs)."""
    seen, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in excluded or pid in seen:
            continue
        seen.append(pid)
        todo += _children(pid)
    return seen


def _run_delay_ns(pid: int) -> int | None:
    try:
        return int((_PROC / str(pid) / "schedstat").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None


class ClientBox:
    """Use as ``with ClientBox() as box: measure()``; then ``box.worst_wait_ms``: the
    longest any client process waited for a CPU within one sample (None: not measured on
    this system). The reference servers running are left out, and ``exclude``."""

    def __init__(self, exclude: Iterable[int] = ()) -> None:
        self._excluded = running_pids() | frozenset(exclude)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: dict[int, int] = {}
        self.worst_wait_ms: float | None = None
        self.worst_sample_ms = 0.0  # how long the sample with that wait was (the sampler
        # is a process on the same box: on a starved one it wakes late too)

    def __enter__(self) -> ClientBox:
        if available():
            self.worst_wait_ms = 0.0
            self._thread = threading.Thread(target=self._sample, name="client-box",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT_S)

    def _sample(self) -> None:
        root = os.getpid()
        pids: list[int] = []
        tick = 0
        sampled = time.monotonic()
        while not self._stop.is_set():
            now_s = time.monotonic()
            sample_ms, sampled = (now_s - sampled) * 1000, now_s
            if tick % TREE_EVERY == 0:
                pids = _tree(root, self._excluded)
            tick += 1
            for pid in pids:
                now = _run_delay_ns(pid)
                if now is None:
                    continue
                before = self._last.get(pid)
                self._last[pid] = now
                if before is not None:
                    waited = (now - before) / 1e6
                    if waited > (self.worst_wait_ms or 0.0):
                        self.worst_wait_ms, self.worst_sample_ms = waited, sample_ms
            time.sleep(SAMPLE_S)
