"""The mock's server-side queue: at most N requests in service, the rest wait FIFO.

With a known service time S and N slots, saturation is known by construction: at a
concurrency c above N the throughput is N / mean(S), and a request waits about
(c / N - 1) x mean(S) for its slot before its own time starts.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Slots:
    def __init__(self, count: int) -> None:
        self._free = count
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> asyncio.Future[None] | None:
        """None when a slot was free (it is now held); else a future done when a slot is
        handed over. A cancelled future never gets one."""
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        return future

    def give_back(self) -> None:
        """Hand the slot to the longest-waiting request still there, or free it."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(None)
                return
        self._free += 1

    @property
    def waiting(self) -> int:
        return sum(not future.done() for future in self._waiting)
