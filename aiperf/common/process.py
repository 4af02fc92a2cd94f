"""Process plumbing: no child outlives its parent, and each service gets a fast event loop."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import os
import select
import signal
import sys
import threading
from collections.abc import Coroutine
from typing import Any

_PR_SET_PDEATHSIG = 1


@functools.cache
def libc() -> ctypes.CDLL:
    """The C library (prctl, timerfd), by its Linux soname first: ``find_library`` runs
    ldconfig in a subprocess, 10+ ms in every process that asks, more on a busy box."""
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def die_with_parent(expected_parent: int | None = None, *, forked: bool = False) -> None:
    """Die (SIGKILL) as soon as the parent process dies. If it already died, exit now.

    ``forked``: this process was forked by its parent's main thread (the services, from
    the controller). Linux's parent-death signal then does the job; it fires when the
    *thread* that created the child exits, which for a main thread is the process's exit.
    Otherwise (the controller, the mock server: started by whatever thread of the host
    called ``Popen``, e.g. an executor thread of ``asyncio.to_thread`` that exits long
    before the host does) the signal would fire too early, so a daemon thread watches the
    parent's pid (a pidfd: no polling) and kills this process when the parent is gone.
    """
    if forked and sys.platform.startswith("linux"):
        libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if expected_parent is not None and os.getppid() != expected_parent:
            os._exit(1)
        return
    kill_self_when_exits(open_parent_pidfd(expected_parent))


def open_parent_pidfd(expected_parent: int | None = None) -> int | None:
    """A pidfd of the parent (None where the platform has none); exits now if the parent
    is already gone. Open it first thing, and watch it with ``kill_self_when_exits``: a
    death in between still shows, since the pidfd stays readable."""
    parent = expected_parent if expected_parent is not None else os.getppid()
    pidfd = None
    if hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(parent)
        except ProcessLookupError:
            os._exit(1)
        except OSError:  # pragma: no cover - kernels before 5.3
            pidfd = None
    if os.getppid() != parent:
        os._exit(1)
    return pidfd


def kill_self_when_exits(pidfd: int | None) -> None:
    """SIGKILL this process as soon as the process of ``pidfd`` exits (a daemon thread
    blocked on the pidfd: no polling, no cost)."""
    if pidfd is not None:
        threading.Thread(target=_kill_self_when_readable, args=(pidfd,),
                         name="aiperf-parent-watch", daemon=True).start()


def _kill_self_when_readable(fd: int) -> None:
    select.select([fd], [], [])  # a pidfd turns readable when its process exits
    os.kill(os.getpid(), signal.SIGKILL)


def run_event_loop(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` on uvloop when it is installed (it is a declared dependency on Linux)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux platforms
        return asyncio.run(main)
    return uvloop.run(main)


def signal_name(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"
