"""The mock's pause timers end pauses on time: the timerfd one to a fraction of a
millisecond, the event-loop one on average."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from aiperf.mock_server.timer import LoopTimer, TimerFdTimer, pause_timer

pytestmark = pytest.mark.real_sleep


async def _errors_ms(make: type | None, pauses: list[float]) -> list[float]:
    loop = asyncio.get_running_loop()
    timer = make(loop) if make is TimerFdTimer else (make() if make else pause_timer(loop))
    errors = []
    try:
        for pause in pauses:
            due = time.monotonic() + pause
            await timer.sleep_until(due)
            errors.append((time.monotonic() - due) * 1000)
    finally:
        timer.close()
    return errors


def test_the_timerfd_timer_ends_each_pause_within_half_a_millisecond() -> None:
    errors = asyncio.run(_errors_ms(TimerFdTimer, [0.0037 + 0.0011 * (i % 5)
                                                   for i in range(40)]))
    assert statistics.median(errors) < 0.3  # the busy-machine allowance is for outliers
    assert min(errors) > -0.3  # never meaningfully early


def test_the_loop_timer_is_right_on_average() -> None:
    errors = asyncio.run(_errors_ms(LoopTimer, [0.0037 + 0.0011 * (i % 5)
                                                for i in range(60)]))
    assert abs(statistics.mean(errors[20:])) < 0.5


def test_concurrent_pauses_each_end_on_time() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        timer = TimerFdTimer(loop)
        start = time.monotonic()

        async def one(offset: float) -> float:
            await timer.sleep_until(start + offset)
            return (time.monotonic() - start - offset) * 1000

        try:
            return await asyncio.gather(*(one(0.002 + 0.0005 * i) for i in range(16)))
        finally:
            timer.close()

    errors = asyncio.run(main())
    assert statistics.median(errors) < 0.3 and min(errors) > -0.3


def test_a_cancelled_pause_does_not_disturb_the_others() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        timer = TimerFdTimer(loop)
        try:
            doomed = asyncio.ensure_future(timer.sleep_until(time.monotonic() + 0.002))
            await asyncio.sleep(0)
            doomed.cancel()
            due = time.monotonic() + 0.005
            await timer.sleep_until(due)
            return (time.monotonic() - due) * 1000
        finally:
            timer.close()

    assert -0.3 < asyncio.run(main()) < 2.0
