"""Open loop at a rate: send times are absolute deadlines computed from the arrival
pattern, sent to workers up to ``LOOKAHEAD_NS`` ahead so they fire on their own clock.

Falling behind (a concurrency cap that blocked, a slow machine) is caught up by sending the
late credits at once, but never more than ``MAX_CATCHUP_NS`` of backlog: past that the
schedule shifts, rather than bursting a minute of traffic in a second. The lag stays
visible in ``credit_to_start_latency``.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from aiperf.plugin import PluginType, plugins
from aiperf.timing.base import TimingStrategy

LOOKAHEAD_NS = 20_000_000
MAX_CATCHUP_NS = 250_000_000
FIRST_SEND_DELAY_NS = 2_000_000
_perf_ns = time.perf_counter_ns


class RequestRateStrategy(TimingStrategy):
    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        cfg = self.config
        assert cfg.request_rate is not None
        arrival_class = plugins.get_class(PluginType.ARRIVAL_PATTERN, cfg.arrival_pattern)
        arrival = arrival_class(cfg.request_rate, cfg.arrival_smoothness, self.rng)
        self.limit_in_flight(cfg.concurrency)
        next_at = _perf_ns() + FIRST_SEND_DELAY_NS
        for _ in range(count) if count is not None else itertools.count():
            if end_ns is not None and next_at > end_ns:
                return
            if not await self.acquire_slot(end_ns):
                return
            now = _perf_ns()
            next_at = max(next_at, now - MAX_CATCHUP_NS)
            wait_ns = next_at - now - LOOKAHEAD_NS
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            await self.issue(phase, send_at_ns=next_at)
            next_at += arrival.next_gap_ns()
