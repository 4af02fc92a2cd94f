"""Timing of sessions and ramps against an in-memory dispatcher (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.codec import Lease
from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.errors import ConfigError
from aiperf.services.worker import _planned_cancel
from aiperf.timing.base import _minus
from aiperf.timing.concurrency import ConcurrencyStrategy
from aiperf.timing.fixed_schedule import FixedScheduleStrategy
from aiperf.timing.request_rate import RequestRateStrategy
from tests.unit.timing.test_strategies import FakeWorkers


def _sessions(*lengths: int) -> list[Turn]:
    return [Turn("x", 1, session=s, turn_index=k)
            for s, n in enumerate(lengths) for k in range(n)]


def _run(turns: list[Turn], **config: object) -> tuple[ConcurrencyStrategy, FakeWorkers]:
    fake = FakeWorkers(["worker_0", "worker_1"])
    strategy = ConcurrencyStrategy(UserConfig(**config), turns, np.random.default_rng(0),
                                   fake, run=1)
    fake.strategy = strategy
    asyncio.run(asyncio.wait_for(strategy.run(), 10))
    return strategy, fake


def test_a_session_count_issues_every_turn_of_that_many_sessions_in_whole_leases() -> None:
    turns = _sessions(3, 1, 4, 2)
    strategy, fake = _run(turns, concurrency=2, conversation_num=4)
    assert strategy.issued == 10
    for _, lease in fake.leases:
        # Each lease starts on a session's first turn and ends on one.
        assert turns[lease.first_id % 10].turn_index == 0
        assert turns[(lease.first_id + lease.count) % 10].turn_index == 0
    # Twice the pool: every session twice.
    assert _run(turns, concurrency=2, conversation_num=8)[0].issued == 20


def test_a_request_count_in_sessions_is_exact() -> None:
    strategy, fake = _run(_sessions(3, 1, 4, 2), concurrency=2, conversation_num=4,
                          request_count=7)
    assert strategy.issued == 7 and sum(lease.count for _, lease in fake.leases) == 7


def test_skipped_ids_leave_the_issued_set() -> None:
    assert _minus([(0, 10)], {3, 4, 9}) == [(0, 3), (5, 4)]
    assert _minus([(0, 2), (5, 3)], {0, 6}) == [(1, 1), (5, 1), (7, 1)]
    assert _minus([(0, 3)], set()) == [(0, 3)]
    fake = FakeWorkers(["w"])
    fake.send_lease = _record_only(fake)  # type: ignore[method-assign]
    strategy = ConcurrencyStrategy(UserConfig(), [Turn("x", 1)], np.random.default_rng(0),
                                   fake, run=1)
    asyncio.run(strategy.lease("w", 1, 6, 2))
    strategy.lease_report(0, 6, False)
    strategy.lease_report(0, 6, True, [4, 5, 99])  # 99 is not this lease's
    assert strategy.issued_ranges == [(0, 4)] and strategy.issued == 4


def _record_only(fake: FakeWorkers) -> Callable[[str, Lease], Awaitable[None]]:
    async def send(worker: str, lease: Lease) -> None:
        fake.leases.append((worker, lease))
    return send


def test_a_trace_replay_refuses_a_multi_turn_dataset_by_name() -> None:
    with pytest.raises(ConfigError, match="cannot run it yet"):
        FixedScheduleStrategy(UserConfig(request_rate=5), _sessions(2, 2),
                              np.random.default_rng(0), FakeWorkers(["w"]), run=1)


def test_at_a_rate_a_sessions_next_turn_follows_its_return_on_the_same_worker() -> None:
    fake = FakeWorkers(["worker_0", "worker_1"])
    turns = _sessions(3, 2)
    strategy = RequestRateStrategy(UserConfig(request_rate=500, request_count=10), turns,
                                   np.random.default_rng(0), fake, run=1)
    fake.strategy = strategy
    asyncio.run(asyncio.wait_for(strategy.run(), 10))
    assert strategy.issued == 10
    seen: dict[int, list[tuple[int, str]]] = {}
    for worker, credit in fake.credits:
        seen.setdefault(credit.session, []).append((credit.conversation, worker))
    for session, entries in seen.items():
        flats = [flat for flat, _ in entries]
        # A session's turns in dataset order from its first, all on one worker.
        assert turns[flats[0]].turn_index == 0
        assert flats == list(range(flats[0], flats[0] + len(flats)))
        assert len({worker for _, worker in entries}) == 1
        assert session == min(c.id for _, c in fake.credits if c.session == session)


def test_a_concurrency_ramp_spreads_the_slots_from_one_to_n() -> None:
    _, fake = _run([Turn("x", 1)], concurrency=5, request_count=50,
                   concurrency_ramp_duration=2.0)
    starts = sorted(s for _, lease in fake.leases for s in lease.slot_starts_ns)
    assert len(starts) == 5  # only the leases that create the slots carry them
    gaps = np.diff(starts) / 1e9
    assert np.allclose(gaps, 0.5, atol=1e-6)  # 2 s over 4 steps: 1 -> 5 in flight
    _, flat = _run([Turn("x", 1)], concurrency=5, request_count=50)
    assert all(not lease.slot_starts_ns for _, lease in flat.leases)


@settings(deadline=None)
@given(st.integers(0, 3000), st.floats(0.001, 1.0))
def test_planned_cancellations_are_exactly_the_rate_of_any_id_range(
        n: int, share: float) -> None:
    chosen = sum(_planned_cancel(i, share) for i in range(n))
    assert chosen == int(n * share)
