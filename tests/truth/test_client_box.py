"""The client's box witness: the kernel's run delay of the processes under this test process.

Two busy children pinned to one CPU each wait for it about half the time, so the witness
must report waits well past ``STARVED_MS``; a reference server is left out, since it
witnesses itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.harness.reference_servers import Behaviour, ReferenceServer
from tests.truth.client_box import SAMPLE_S, ClientBox, available
from tests.truth.compare import STARVED_MS, client_starved

pytestmark = pytest.mark.skipif(not available() or not hasattr(os, "sched_setaffinity"),
                                reason="needs Linux's /proc/<pid>/schedstat and affinity")

BUSY_S = 0.6
SPIN = f"import time\nend = time.monotonic() + {BUSY_S}\nwhile time.monotonic() < end: pass"


def test_two_processes_sharing_one_cpu_are_seen_waiting() -> None:
    cpu = min(os.sched_getaffinity(0))
    with ClientBox() as box:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
        for spinner in spinners:
            os.sched_setaffinity(spinner.pid, {cpu})
        for spinner in spinners:
            spinner.wait(BUSY_S + 30)
    assert box.worst_wait_ms is not None
    # Each gets the CPU about half of every sample: a wait of half a sample, at least.
    assert box.worst_wait_ms > STARVED_MS, box.worst_wait_ms
    assert box.worst_wait_ms >= SAMPLE_S * 1000 / 2 * 0.8, box.worst_wait_ms
    assert client_starved(box.worst_wait_ms)


def test_a_reference_server_is_not_a_client() -> None:
    with ReferenceServer(Behaviour()) as server, ClientBox() as box:
        assert server.pid is not None
        time.sleep(3 * SAMPLE_S)
    assert server.pid not in box._last


def test_nothing_measured_is_not_starved() -> None:
    assert not client_starved(None)
    assert not client_starved(STARVED_MS)
