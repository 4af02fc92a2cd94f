"""Replay the dataset's timestamps (ms offsets from the first entry) exactly."""

from __future__ import annotations

import asyncio
import itertools
import time

from aiperf.errors import ConfigError
from aiperf.timing.base import TimingStrategy
from aiperf.timing.request_rate import FIRST_SEND_DELAY_NS, LOOKAHEAD_NS

_perf_ns = time.perf_counter_ns


class FixedScheduleStrategy(TimingStrategy):
    def idle_gap_s(self) -> float:
        """The trace's longest pause between two consecutive entries."""
        stamps = sorted(t.timestamp_ms for t in self.turns if t.timestamp_ms is not None)
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        return max(gaps, default=0.0) / 1000.0

    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        stamps = [t.timestamp_ms for t in self.turns]
        if any(s is None for s in stamps):
            raise ConfigError("fixed_schedule: every dataset entry needs a 'timestamp'")
        first = min(s for s in stamps if s is not None)
        start = _perf_ns() + FIRST_SEND_DELAY_NS
        total = len(self.turns) if count is None else min(count, len(self.turns))
        order = sorted(range(len(self.turns)), key=lambda i: stamps[i] or 0)[:total]
        schedule = [(start + int(((stamps[i] or 0) - first) * 1e6), i) for i in order]
        if end_ns is not None:
            schedule = [(at, i) for at, i in schedule if at <= end_ns]
        position = 0
        while position < len(schedule):
            horizon = _perf_ns() + LOOKAHEAD_NS
            due: list[tuple[int, int | None]] = []
            while position < len(schedule) and schedule[position][0] <= horizon:
                due.append(schedule[position])
                position += 1
            await self.send_scheduled(phase, due)
            if position < len(schedule):
                wait_ns = schedule[position][0] - _perf_ns() - LOOKAHEAD_NS
                if wait_ns > 0:
                    await asyncio.sleep(wait_ns / 1e9)
