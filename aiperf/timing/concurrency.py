"""Closed loop: N requests in flight. The N slots are split across workers and each worker
spends leased ids itself; a used-up lease is replaced by a new one, two kept in hand."""

from __future__ import annotations

import math
import time

from aiperf.dataset.sessions import whole_session_leases
from aiperf.timing.base import LeaseState, TimingStrategy

_perf_ns = time.perf_counter_ns

LEASES_IN_HAND = 2
# The ramp's first slot starts this long after the leases go out (they travel first).
RAMP_START_DELAY_NS = 5_000_000
LEASE_SLOTS_MULTIPLE = 16


def split_slots(total: int, workers: list[str]) -> dict[str, int]:
    base, extra = divmod(total, len(workers))
    shares = {w: base + (1 if i < extra else 0) for i, w in enumerate(workers)}
    return {w: n for w, n in shares.items() if n}


class ConcurrencyStrategy(TimingStrategy):
    supports_sessions = True

    def _whole_sessions(self, n: int, budget: float) -> int:
        """Multi-turn: ``n`` grown to whole sessions from the next lease's first id, never
        past the budget (the last lease may then end inside a session)."""
        if self.layout is None or not whole_session_leases(self.config):
            return n
        whole = self.layout.whole_sessions(self.layout.align_up(self._next_id), n)
        return int(min(budget, whole))

    def _ramp(self, slots: dict[str, int]) -> dict[str, list[int]]:
        """--concurrency-ramp-duration: slot g of N (the workers' slots interleaved, so the
        count grows evenly over them) starts g / (N - 1) of the way through the ramp:
        concurrency goes from 1 to N. Only once a run: slots, once started, stay."""
        duration = self.config.concurrency_ramp_duration
        total = sum(slots.values())
        if not duration or total < 2 or self._ramped:
            return {}
        self._ramped = True
        start = _perf_ns() + RAMP_START_DELAY_NS
        step = duration * 1e9 / (total - 1)
        order = list(slots)
        return {worker: [start + int((j * len(order) + w) * step)
                         for j in range(slots[worker])]
                for w, worker in enumerate(order)}

    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        slots = split_slots(self.config.concurrency or 1, self.dispatcher.workers)
        ramp = self._ramp(slots)
        budget = math.inf if count is None else count
        deadline = end_ns or 0

        def size(worker: str) -> int:
            fair = math.ceil(budget / (LEASES_IN_HAND * len(slots))) if count else math.inf
            return int(min(budget, max(slots[worker], min(fair,
                                                          slots[worker] * LEASE_SLOTS_MULTIPLE))))

        for _ in range(LEASES_IN_HAND):
            for worker in slots:
                n = self._whole_sessions(size(worker), budget)
                if n <= 0:
                    break
                budget -= n
                await self.lease(worker, phase, n, slots[worker], deadline,
                                 ramp.pop(worker, []))
        while budget > 0:
            consumed = self._take_consumed(phase)
            if not consumed:
                bound = self.wait_bound_s(end_ns)
                came = await self.wait_for(lambda: self._any_new_consumed(phase), bound)
                if not came and end_ns is not None and _perf_ns() > end_ns:
                    return  # past the end and the grace: no lease will come back
                continue
            for state in consumed:
                if deadline and state.started < state.lease.count:
                    budget = 0  # a worker hit the deadline: the phase is over
                if budget <= 0:
                    break
                n = self._whole_sessions(size(state.worker), budget)
                budget -= n
                await self.lease(state.worker, phase, n, slots[state.worker], deadline)

    def _take_consumed(self, phase: int) -> list[LeaseState]:
        """The leases of ``phase`` newly reported consumed; another phase's (the warm-up's,
        reported after profiling began) need no replacement and are dropped."""
        taken = [s for s in self.newly_consumed if s.lease.phase == phase]
        self.newly_consumed.clear()
        return taken

    def _any_new_consumed(self, phase: int) -> bool:
        return any(s.lease.phase == phase for s in self.newly_consumed)
