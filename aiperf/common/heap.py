"""Handing the heap's freed pages back to the kernel, so a long run's memory stays flat.

glibc's malloc returns memory to the kernel only from the top of its heap. Pages freed
inside it stay resident until ``malloc_trim`` gives them back. A service that churns
through bodies, frames and batches for hours leaves more such holes than it reuses: in
sketch mode at the highest rate, the worker's PSS rose about 0.6 MiB a minute while
tracemalloc saw no growth, and a ``malloc_trim(0)`` every 10 s cut that rise by two
thirds (docs/long-runs.md). Every service trims every ``TRIM_EVERY_S``.

A trim walks the heap with malloc's lock held: in that soak, 0.2-0.9 ms in the worker and
under 0.75 ms in any service, once a minute (about 3 ms for 40 MB freed at once). The
worker's load probe sees such a pause as event-loop lag like any other; a request whose
chunk arrives during it is stamped up to that much late, as in a garbage collection.
Elsewhere than glibc (musl, macOS) there is nothing to call, and nothing is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiperf.common.process import libc

TRIM_EVERY_S = 60.0

# glibc's mallopt parameter: allocations at least this large get pages of their own.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return libc().malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError, TypeError):  # no C library found, or not glibc
        return None


_malloc_trim = _find_malloc_trim()


def large_allocations_as_mappings() -> None:
    """Give every allocation of 128 KiB or more (the records manager's growing value
    arrays) a mapping of its own, for good: glibc otherwise raises that threshold to the
    size of a freed mapping, after which arrays grow by realloc inside the heap, leaving
    holes, and a run's arrays, once freed, stay in the heap instead of going back to the
    system. A mapped array grows by mremap, without a copy, and is unmapped when dropped.
    Not glibc: no-op."""
    try:
        libc().mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError, TypeError):
        pass


def can_trim() -> bool:
    return _malloc_trim is not None


def trim_heap() -> float | None:
    """Give the heap's free pages back to the kernel; the seconds it took, or None where
    the C library has no ``malloc_trim``."""
    if _malloc_trim is None:
        return None
    started = time.perf_counter()
    _malloc_trim(0)
    return time.perf_counter() - started


async def trim_heap_periodically(every_s: float = TRIM_EVERY_S) -> None:
    """Trim every ``every_s`` until cancelled (a service's background task)."""
    if _malloc_trim is None:
        return
    while True:
        await asyncio.sleep(every_s)
        trim_heap()
