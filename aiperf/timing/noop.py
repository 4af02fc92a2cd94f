"""A strategy that issues nothing: a run every service configures, starts and finishes."""

from __future__ import annotations

from aiperf.timing.base import TimingStrategy


class NoopStrategy(TimingStrategy):
    async def run(self) -> None:
        return None

    async def issue_phase(self, phase: int, count: int | None, end_ns: int | None) -> None:
        return None
