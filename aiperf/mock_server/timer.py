"""Pauses that end on time, to a fraction of a millisecond.

The mock's whole purpose is a known latency: a configured 30 ms TTFT must measure 30 ms.
Event-loop timers cannot give that: uvloop keeps them in whole milliseconds (they fire up
to a millisecond early or late), and spinning to the due moment burns the CPU the clients
under test need. On Linux a ``timerfd`` armed at the earliest pending deadline (absolute,
on CLOCK_MONOTONIC, which ``time.monotonic`` reads) wakes the loop within tens of
microseconds of it, for one syscall per wake. Elsewhere, ``LoopTimer`` sleeps on the loop
and shortens each pause by the lateness seen lately, which is right on average.
"""

from __future__ import annotations

import asyncio
import ctypes
import heapq
import itertools
import os
import sys
import time
from typing import Protocol

from aiperf.common.process import libc

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = 0o4000
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1
EARLY_S = 20e-6  # deadlines this close are served by the same wake


class PauseTimer(Protocol):
    async def sleep_until(self, due: float) -> None: ...

    def close(self) -> None: ...


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerFdTimer:
    """One timerfd per event loop, armed at the earliest pending deadline, less the time
    a wake takes to reach the paused task (measured as it goes: about 0.1-0.2 ms)."""

    GAIN = 0.2  # how much of each new observation moves the lead
    MAX_LEAD_S = 0.0003
    # A wake far later than the usual path (a busy machine) says nothing about that path:
    # each observation moves the lead by at most this, so one outlier cannot make the next
    # pauses end early.
    MAX_STEP_S = 0.0002

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = libc()
        fd = self._libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._fd = fd
        self._loop = loop
        self._pending: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._armed = float("inf")
        self.lead_s = 0.0
        loop.add_reader(fd, self._fired)

    async def sleep_until(self, due: float) -> None:
        wake = due - self.lead_s
        if wake - time.monotonic() <= EARLY_S:
            return
        future: asyncio.Future[None] = self._loop.create_future()
        heapq.heappush(self._pending, (wake, next(self._order), future))
        if wake < self._armed:
            self._arm(wake)
        await future
        error = max(-self.MAX_STEP_S, min(self.MAX_STEP_S, time.monotonic() - due))
        self.lead_s = min(self.MAX_LEAD_S, max(0.0, self.lead_s + self.GAIN * error))

    def _arm(self, due: float) -> None:
        seconds = int(due)
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(seconds, int((due - seconds) * 1e9)))
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec),
                                      None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._armed = due

    def _fired(self) -> None:
        try:
            os.read(self._fd, 8)
        except BlockingIOError:
            pass  # re-armed for later since it fired: nothing due yet
        self._armed = float("inf")
        now = time.monotonic() + EARLY_S
        pending = self._pending
        while pending and pending[0][0] <= now:
            future = heapq.heappop(pending)[2]
            if not future.done():  # a cancelled pause (its connection went away)
                future.set_result(None)
        if pending:
            self._arm(pending[0][0])

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class LoopTimer:
    """Event-loop sleeps, each shortened by the lateness seen lately: on time on average."""

    GAIN = 0.2  # how much of each new observation moves the estimate
    MAX_LEAD_S = 0.002  # never wake more than this early, whatever was observed

    def __init__(self) -> None:
        self.lateness_s = 0.0

    async def sleep_until(self, due: float) -> None:
        remaining = due - time.monotonic() - self.lateness_s
        if remaining <= 0:
            return  # already due (or behind): a pause that did not sleep says nothing
        await asyncio.sleep(remaining)
        error = time.monotonic() - due
        self.lateness_s = min(self.MAX_LEAD_S, max(0.0, self.lateness_s + self.GAIN * error))

    def close(self) -> None:
        pass


def pause_timer(loop: asyncio.AbstractEventLoop) -> PauseTimer:
    if sys.platform.startswith("linux"):
        try:
            return TimerFdTimer(loop)
        except (OSError, AttributeError):
            pass
    return LoopTimer()
