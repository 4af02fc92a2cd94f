"""What every timing strategy shares: phases, credit ids, stop conditions, returns.

A run is an optional warmup phase (its credits all return before profiling starts, so no
warmup request overlaps the measured window) and a profiling phase that stops after
``request_count`` credits or when ``benchmark_duration`` has passed. Subclasses decide only
*when* each credit of a phase goes (``issue_phase``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import numpy as np

from aiperf.common.codec import PROFILING, WARMUP, Credit
from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn

SendCredit = Callable[[Credit], Awaitable[None]]
_perf_ns = time.perf_counter_ns


class TimingStrategy:
    def __init__(
        self, config: UserConfig, turns: list[Turn], rng: np.random.Generator, send: SendCredit
    ) -> None:
        self.config = config
        self.turns = turns
        self.rng = rng
        self._send = send
        self.issued = 0
        self.warmup_issued = 0
        self.outstanding: set[int] = set()
        self._all_returned = asyncio.Event()
        self._all_returned.set()
        self._slots: asyncio.Semaphore | None = None

    # -- used by subclasses ---------------------------------------------------------------

    def limit_in_flight(self, slots: int | None) -> None:
        self._slots = asyncio.Semaphore(slots) if slots else None

    async def acquire_slot(self, deadline_ns: int | None = None) -> bool:
        """Wait for a free in-flight slot (if limited); False when the deadline passed."""
        if self._slots is None:
            return True
        if deadline_ns is None:
            await self._slots.acquire()
            return True
        timeout = (deadline_ns - _perf_ns()) / 1e9
        if timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def issue(
        self, phase: int, send_at_ns: int | None = None, conversation: int | None = None
    ) -> None:
        credit_id = self.issued
        self.issued += 1
        if phase == WARMUP:
            self.warmup_issued += 1
        self.outstanding.add(credit_id)
        self._all_returned.clear()
        if conversation is None:
            conversation = credit_id % len(self.turns) if self.turns else 0
        await self._send(Credit(credit_id, phase, conversation, send_at_ns or _perf_ns()))

    # -- driven by the timing manager -----------------------------------------------------

    def returned(self, credit_ids: list[int]) -> None:
        for credit_id in credit_ids:
            if credit_id in self.outstanding:
                self.outstanding.discard(credit_id)
                if self._slots is not None:
                    self._slots.release()
        if not self.outstanding:
            self._all_returned.set()

    async def wait_all_returned(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._all_returned.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def run(self) -> None:
        cfg = self.config
        if cfg.warmup_request_count:
            await self.issue_phase(WARMUP, cfg.warmup_request_count, None)
            await self.wait_all_returned(cfg.request_timeout_seconds + 5)
        end_ns = None
        if cfg.benchmark_duration is not None:
            end_ns = _perf_ns() + int(cfg.benchmark_duration * 1e9)
        await self.issue_phase(PROFILING, cfg.resolved_request_count(), end_ns)

    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        raise NotImplementedError
