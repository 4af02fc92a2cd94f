"""What a worker's own load was during a run: its event loop's lag and its process CPU.

One timer per worker, never per request: every ``PERIOD_S`` it notes how late it fired
(the loop was busy, or the process was not scheduled) and, every ``CPU_EVERY`` ticks, the
process's CPU time. The host cuts both to the run's span (``aiperf.validity``), so the
samples carry their ``perf_counter`` times. Measured cost: one callback per 10 ms of
about 4 us, loop iteration included: 0.04 % of a core (docs/validity.md).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from typing import Any

PERIOD_S = 0.01
CPU_EVERY = 10
# About 11 minutes of ticks at 10 ms (1 MiB); past it every other tick is dropped and the
# period doubles, so a long run keeps its whole span at a coarser grain in bounded memory.
# An hour's worth (6.4 MB a worker) showed as a slope in sketch mode's flat-memory soak.
# Thinning keeps the lag p99 (a uniform subsample of 32,768 ticks or more).
MAX_TICKS = 65_536
# The cumulative CPU samples thin the same way: interpolating between every other one
# loses nothing but resolution in time.
MAX_CPU_SAMPLES = 8_192

_perf_ns = time.perf_counter_ns
_cpu_ns = time.process_time_ns


class LoadProbe:
    def __init__(self, period_s: float = PERIOD_S) -> None:
        self._base_period_ns = int(period_s * 1e9)
        self._period_ns = self._base_period_ns
        self._handle: asyncio.TimerHandle | None = None
        self._due_ns = 0
        self._ticks = 0
        self._tick_ns = array("q")
        self._lag_ns = array("q")
        self._cpu_at_ns = array("q")
        self._cpu_ns = array("q")

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Forget the last run's samples and begin measuring."""
        self.stop()
        self._period_ns = self._base_period_ns
        self._ticks = 0
        for samples in (self._tick_ns, self._lag_ns, self._cpu_at_ns, self._cpu_ns):
            del samples[:]
        self._note_cpu(_perf_ns())
        self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def report(self) -> dict[str, Any]:
        """The samples so far as bytes (int64 native order), with a closing CPU sample."""
        if self.running:
            self._note_cpu(_perf_ns())
        return {"tick_ns": self._tick_ns.tobytes(), "lag_ns": self._lag_ns.tobytes(),
                "cpu_at_ns": self._cpu_at_ns.tobytes(), "cpu_ns": self._cpu_ns.tobytes(),
                "period_ns": self._period_ns}

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due_ns = _perf_ns() + self._period_ns
        self._handle = loop.call_later(self._period_ns / 1e9, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        now = _perf_ns()
        self._tick_ns.append(now)
        self._lag_ns.append(now - self._due_ns)
        self._ticks += 1
        if self._ticks % CPU_EVERY == 0:
            self._note_cpu(now)
        if len(self._tick_ns) >= MAX_TICKS:
            self._coarsen()
        self._schedule(loop)

    def _note_cpu(self, now: int) -> None:
        self._cpu_at_ns.append(now)
        self._cpu_ns.append(_cpu_ns())
        if len(self._cpu_at_ns) >= MAX_CPU_SAMPLES:
            _keep_every_other(self._cpu_at_ns, self._cpu_ns)

    def _coarsen(self) -> None:
        _keep_every_other(self._tick_ns, self._lag_ns)
        self._period_ns *= 2


def _keep_every_other(*columns: array) -> None:
    for samples in columns:
        kept = samples[::2]
        del samples[:]
        samples.extend(kept)
