"""Closed loop: N credits in flight; each returned credit lets the next one go."""

from __future__ import annotations

import itertools

from aiperf.timing.base import TimingStrategy


class ConcurrencyStrategy(TimingStrategy):
    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        self.limit_in_flight(self.config.concurrency or 1)
        for _ in range(count) if count is not None else itertools.count():
            if not await self.acquire_slot(end_ns):
                return
            await self.issue(phase)
