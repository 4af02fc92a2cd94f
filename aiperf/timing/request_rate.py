"""Open loop at a rate: send times are absolute deadlines from the arrival pattern. Credits
due within ``LOOKAHEAD_NS`` go out together, one batch per worker, and each worker fires
them on its own clock.

Falling behind (a concurrency cap that blocked, a slow machine) is caught up by sending the
late credits at once, but never more than ``MAX_CATCHUP_NS`` of backlog: past that the
schedule shifts, rather than bursting a minute of traffic in a second. The lag stays
visible in ``credit_to_start_latency``.
"""

from __future__ import annotations

import asyncio
import time

from aiperf.plugin import PluginType, plugins
from aiperf.timing.base import TimingStrategy

LOOKAHEAD_NS = 20_000_000
MAX_CATCHUP_NS = 250_000_000
FIRST_SEND_DELAY_NS = 2_000_000
# An exponential gap is longer than this many mean gaps with probability e^-20.
IDLE_GAP_MEANS = 20.0
# --request-rate-ramp-duration starts at the target rate times this over the duration.
RAMP_STEP_S = 0.1
_perf_ns = time.perf_counter_ns


class RequestRateStrategy(TimingStrategy):
    # Sessions: each slot of the schedule sends a session's next turn once the previous
    # one returned (and its think time passed), else a new session's first (base).
    supports_sessions = True

    def idle_gap_s(self) -> float:
        rate = self.config.request_rate
        ramp = self.config.request_rate_ramp_duration
        if rate and ramp:
            rate *= min(1.0, RAMP_STEP_S / ramp)  # the ramp's slowest start
        return IDLE_GAP_MEANS / rate if rate else 0.0

    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        cfg = self.config
        assert cfg.request_rate is not None
        arrival_class = plugins.get_class(PluginType.ARRIVAL_PATTERN, cfg.arrival_pattern)
        arrival = arrival_class(cfg.request_rate, cfg.arrival_smoothness, self.rng)
        self.limit_in_flight(cfg.concurrency)
        remaining = count
        next_at = _perf_ns() + FIRST_SEND_DELAY_NS
        ramp_from = next_at
        ramp_ns = int((cfg.request_rate_ramp_duration or 0) * 1e9)
        # The ramp's lowest rate: the target's share of one RAMP_STEP_S of the ramp.
        ramp_floor = min(1.0, RAMP_STEP_S * 1e9 / ramp_ns) if ramp_ns else 1.0

        def gap(at: int) -> int:
            """The arrival pattern's next gap, stretched while the rate ramps up: the rate
            at ``at`` is the target times the share of the ramp gone by."""
            raw = arrival.next_gap_ns()
            if not ramp_ns or at - ramp_from >= ramp_ns:
                return raw
            return int(raw / max(ramp_floor, (at - ramp_from) / ramp_ns))

        def more_due(taken: int, horizon: int) -> bool:
            return (next_at <= horizon
                    and (remaining is None or remaining > taken)
                    and (end_ns is None or next_at <= end_ns)
                    and (self._slots is None or not self._slots.locked()))

        while remaining is None or remaining > 0:
            if end_ns is not None and next_at > end_ns:
                return
            wait_ns = next_at - _perf_ns() - LOOKAHEAD_NS
            if wait_ns > 0:
                await asyncio.sleep(wait_ns / 1e9)
            if not await self.acquire_slot(end_ns):
                return
            next_at = max(next_at, _perf_ns() - MAX_CATCHUP_NS)
            due: list[tuple[int, int | None]] = [(next_at, None)]
            next_at += gap(next_at)
            horizon = _perf_ns() + LOOKAHEAD_NS
            while more_due(len(due), horizon):
                await self.acquire_slot()  # free (checked above): returns at once
                due.append((next_at, None))
                next_at += gap(next_at)
            await self.send_scheduled(phase, due)
            if remaining is not None:
                remaining -= len(due)
