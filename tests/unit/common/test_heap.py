"""The heap trim (aiperf.common.heap) hands freed pages inside the heap back to the kernel."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from aiperf.common import heap

# A fresh interpreter fills 40 MB of the heap with 2 KB objects, keeps the newest (so the
# heap's top stays in use and free() alone cannot shrink it), frees the rest, and reads its
# resident memory before and after a trim.
FRAGMENTED_HEAP = """
import json, sys
from aiperf.common.heap import trim_heap

def resident_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4
objects = [bytes(2048) for _ in range(20_000)]
newest = objects[-1]
del objects
before = resident_kib()
took = trim_heap()
print(json.dumps({"before": before, "after": resident_kib(), "took": took}))
"""


@pytest.mark.skipif(not heap.can_trim(), reason="no malloc_trim in this C library")
def test_a_trim_gives_back_the_pages_freed_inside_the_heap() -> None:
    out = subprocess.run([sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True,
                         text=True, timeout=60, check=True)
    measured = json.loads(out.stdout)
    # 40 MB were freed below a live object; at least half of it must leave (the rest of
    # the difference is what malloc keeps in its bins by design).
    assert measured["before"] - measured["after"] >= 20 * 1024, measured
    assert measured["took"] is not None and measured["took"] >= 0


def test_without_malloc_trim_nothing_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_malloc_trim", None)
    assert not heap.can_trim() and heap.trim_heap() is None
    # The background task ends at once instead of sleeping forever.
    asyncio.run(asyncio.wait_for(heap.trim_heap_periodically(every_s=3600), timeout=5))


@pytest.mark.skipif(not heap.can_trim(), reason="no malloc_trim in this C library")
def test_the_periodic_trim_trims_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(heap, "_malloc_trim", lambda pad: calls.append(pad) or 1)

    async def main() -> None:
        task = asyncio.create_task(heap.trim_heap_periodically(every_s=0.001))
        deadline = asyncio.get_running_loop().time() + 10
        while len(calls) < 3 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls[:3] == [0, 0, 0]
