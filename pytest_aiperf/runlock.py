"""One load test at a time on this machine across pytest-xdist workers.

Load tests on one box distort each other (they share its cores and often the server), so
each run holds an exclusive ``flock`` on a file named after the xdist test run; unit tests
on other workers go on in parallel. The holder writes its own deadline into the file, and
a waiter gives up (with an error naming the holder) once that deadline is well past, so
the wait is bounded by the holder's own ``aiperf_test_timeout``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.05
STALE_AFTER_S = 60.0  # past the holder's deadline: it is stuck (its alarm should have fired)


class RunLockTimeout(Exception):
    """Another xdist worker held the load-test lock far past its own deadline."""


def lock_path(testrunuid: str) -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-aiperf-{testrunuid}.lock"


@contextmanager
def exclusive_run(path: Path | None, deadline_s: float, who: str) -> Iterator[None]:
    """Hold the lock at ``path`` (None: no other worker to wait for) while the run goes."""
    if path is None:
        yield
        return
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        holder_deadline = time.time() + STALE_AFTER_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(fd)
                if holder is not None:
                    holder_deadline = float(holder.get("deadline", holder_deadline))
                if time.time() > holder_deadline + STALE_AFTER_S:
                    raise RunLockTimeout(
                        f"{who}: another xdist worker's load test "
                        f"({holder.get('who') if holder else 'unknown'}) held the run lock "
                        f"{path} far past its deadline") from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"who": who, "pid": os.getpid(),
                                  "deadline": time.time() + deadline_s}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, object] | None:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None
