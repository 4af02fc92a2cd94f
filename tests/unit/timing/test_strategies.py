"""Timing strategies against an in-memory dispatcher (no sockets): what they issue, when."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aiperf.common.codec import PROFILING, WARMUP, Credit, Lease
from aiperf.common.config import UserConfig
from aiperf.dataset.models import Turn
from aiperf.timing.arrival import ConstantArrival, GammaArrival, PoissonArrival
from aiperf.timing.base import TimingStrategy
from aiperf.timing.concurrency import ConcurrencyStrategy, split_slots
from aiperf.timing.fixed_schedule import FixedScheduleStrategy
from aiperf.timing.request_rate import RequestRateStrategy


class FakeWorkers:
    """Spends every lease at once and returns every credit, as instant workers would."""

    def __init__(self, workers: list[str]) -> None:
        self.workers = workers
        self.leases: list[tuple[str, Lease]] = []
        self.credits: list[tuple[str, Credit]] = []
        self.strategy: TimingStrategy | None = None
        self.most_in_flight = 0

    async def send_lease(self, worker: str, lease: Lease) -> None:
        self.leases.append((worker, lease))
        assert self.strategy is not None
        loop = asyncio.get_running_loop()
        loop.call_soon(self.strategy.lease_report, lease.first_id, lease.count, True)

    async def send_credits(self, worker: str, credits: list[Credit]) -> None:
        self.credits.extend((worker, c) for c in credits)
        assert self.strategy is not None
        self.most_in_flight = max(self.most_in_flight, len(self.strategy.scheduled))
        asyncio.get_running_loop().call_soon(self.strategy.returned, [c.id for c in credits])


def run(strategy_class: type[TimingStrategy], workers: int = 2,
        turns: list[Turn] | None = None, **config: object) -> tuple[TimingStrategy, FakeWorkers]:
    fake = FakeWorkers([f"worker_{i}" for i in range(workers)])
    strategy = strategy_class(UserConfig(**config), turns or [Turn("x", 1)],
                              np.random.default_rng(0), fake, run=1)
    fake.strategy = strategy
    asyncio.run(asyncio.wait_for(strategy.run(), 10))
    return strategy, fake


def test_concurrency_slots_are_split_across_workers() -> None:
    assert split_slots(5, ["a", "b"]) == {"a": 3, "b": 2}
    assert split_slots(1, ["a", "b"]) == {"a": 1}


def test_concurrency_issues_exactly_the_request_count_in_leases() -> None:
    strategy, fake = run(ConcurrencyStrategy, concurrency=4, request_count=37)
    assert strategy.issued == 37
    assert sum(lease.count for _, lease in fake.leases) == 37
    assert {lease.slots for _, lease in fake.leases} == {2}
    assert {worker for worker, _ in fake.leases} == {"worker_0", "worker_1"}
    ids = sorted(i for first, n in strategy.issued_ranges for i in range(first, first + n))
    assert ids == list(range(37))


def test_warmup_leases_come_first_and_are_counted_apart() -> None:
    strategy, fake = run(ConcurrencyStrategy, concurrency=2, request_count=10,
                         warmup_request_count=3)
    phases = [lease.phase for _, lease in fake.leases]
    assert phases == sorted(phases)  # every warmup lease before any profiling lease
    assert phases[0] == WARMUP and phases[-1] == PROFILING
    assert strategy.warmup_issued == 3 and strategy.issued == 13


@pytest.mark.real_sleep
def test_request_rate_sends_scheduled_credits_round_robin() -> None:
    strategy, fake = run(RequestRateStrategy, request_rate=1000, arrival_pattern="constant",
                         request_count=20)
    assert strategy.issued == 20
    by_id = sorted(fake.credits, key=lambda wc: wc[1].id)
    times = [c.send_at_ns for _, c in by_id]
    assert times == sorted(times) and np.allclose(np.diff(times), 1_000_000)
    assert [w for w, _ in by_id][:4] == ["worker_0", "worker_1"] * 2
    # Sent a few at a time, the ids are still one range: memory that does not grow with
    # a soak test's length (and one tuple, not millions, in the end-of-run message).
    assert strategy.issued_ranges == [(0, 20)]


@pytest.mark.real_sleep
def test_a_concurrency_cap_keeps_the_rate_strategy_within_its_slots() -> None:
    strategy, fake = run(RequestRateStrategy, request_rate=5000, concurrency=2,
                         request_count=12)
    assert strategy.issued == 12 and not strategy.scheduled
    assert fake.most_in_flight == 2


@pytest.mark.real_sleep
def test_fixed_schedule_replays_offsets_in_order() -> None:
    turns = [Turn("a", 1, timestamp_ms=t) for t in (20.0, 0.0, 10.0)]
    _, fake = run(FixedScheduleStrategy, turns=turns, input_file="trace.jsonl",
                         fixed_schedule=True)
    credits = sorted((c for _, c in fake.credits), key=lambda c: c.id)
    assert [c.conversation for c in credits] == [1, 2, 0]
    assert np.allclose(np.diff([c.send_at_ns for c in credits]), 10_000_000)


@pytest.mark.parametrize("pattern", [ConstantArrival, PoissonArrival, GammaArrival])
def test_arrival_patterns_average_to_the_rate(pattern: type) -> None:
    arrival = pattern(200.0, 4.0, np.random.default_rng(42))
    gaps = np.array([arrival.next_gap_ns() for _ in range(20_000)])
    assert gaps.mean() == pytest.approx(5_000_000, rel=0.03)


def test_gamma_smoothness_narrows_the_gaps() -> None:
    rough = GammaArrival(100.0, 1.0, np.random.default_rng(1))
    smooth = GammaArrival(100.0, 16.0, np.random.default_rng(1))
    std = [np.std([a.next_gap_ns() for _ in range(5000)]) for a in (rough, smooth)]
    assert std[1] < std[0] / 3


class SilentWorkers(FakeWorkers):
    """Take leases and credits and never report back: workers stuck in requests."""

    async def send_lease(self, worker: str, lease: Lease) -> None:
        self.leases.append((worker, lease))

    async def send_credits(self, worker: str, credits: list[Credit]) -> None:
        self.credits.extend((worker, c) for c in credits)


@pytest.mark.real_sleep
def test_a_duration_phase_ends_at_its_end_plus_grace_even_if_no_worker_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every wait of a strategy is bounded by the run (it once waited up to an hour)."""
    monkeypatch.setattr("aiperf.timing.base.PHASE_TIMEOUT_MARGIN_S", 0.2)
    fake = SilentWorkers(["worker_0"])
    config = UserConfig(concurrency=2, benchmark_duration="200ms", benchmark_grace_period=0.2,
                        request_count=10_000, request_timeout_seconds=600)
    strategy = ConcurrencyStrategy(config, [Turn("x", 1)], np.random.default_rng(0), fake, 1)
    fake.strategy = strategy
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        loop.run_until_complete(asyncio.wait_for(strategy.run(), 10))
        assert loop.time() - started < 3.0
    finally:
        loop.close()
    assert strategy.issued == 0  # nothing was reported as started


def test_wait_bounds_follow_the_run_not_the_request_count() -> None:
    fake = SilentWorkers(["worker_0"])
    few = ConcurrencyStrategy(UserConfig(request_count=10, request_timeout_seconds=7),
                              [Turn("x", 1)], np.random.default_rng(0), fake, 1)
    many = ConcurrencyStrategy(UserConfig(request_count=10**6, request_timeout_seconds=7),
                               [Turn("x", 1)], np.random.default_rng(0), fake, 1)
    assert few.wait_bound_s() == many.wait_bound_s() < 7 + 60


def test_the_idle_gap_of_a_schedule_is_what_the_controller_adds_to_the_stall_rule() -> None:
    fake = SilentWorkers(["worker_0"])
    turns = [Turn("a", 1, timestamp_ms=0), Turn("b", 1, timestamp_ms=4000),
             Turn("c", 1, timestamp_ms=4500)]
    trace = FixedScheduleStrategy(UserConfig(input_file="t", fixed_schedule=True), turns,
                                  np.random.default_rng(0), fake, 1)
    assert trace.idle_gap_s() == 4.0
    rated = RequestRateStrategy(UserConfig(request_rate=2), turns, np.random.default_rng(0),
                                fake, 1)
    assert rated.idle_gap_s() == 10.0
    closed = ConcurrencyStrategy(UserConfig(), turns, np.random.default_rng(0), fake, 1)
    assert closed.idle_gap_s() == 0.0


def test_a_driver_cancelled_as_a_report_arrives_stops_issuing() -> None:
    """A host's cancel that lands as a worker's lease report wakes the strategy: the
    driver must stop. (With asyncio.wait_for on Python 3.11 the cancel was lost, and the
    driver went on issuing leases that the cancelled workers handed straight back.)"""
    fake = SilentWorkers(["worker_0"])
    strategy = ConcurrencyStrategy(UserConfig(concurrency=2, request_count=10**6),
                                   [Turn("x", 1)], np.random.default_rng(0), fake, 1)
    fake.strategy = strategy

    async def main() -> None:
        driver = asyncio.create_task(strategy.run())
        for _ in range(100):  # the first leases go out at once; the driver then waits
            await asyncio.sleep(0)
        sent = len(fake.leases)
        assert sent > 0 and not driver.done()
        strategy.lease_report(fake.leases[0][1].first_id, fake.leases[0][1].count, True)
        # One turn of the loop: the report's wake-up runs (wait_for's inner task finished,
        # its caller not yet resumed), then the cancel comes.
        await asyncio.sleep(0)
        driver.cancel()
        at_cancel = len(fake.leases)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(driver, 5)
        assert len(fake.leases) == at_cancel  # nothing issued after the cancel

    asyncio.run(main())


def test_a_long_closed_loop_keeps_only_the_leases_still_out() -> None:
    """Spent and done leases are let go (issued ranges account for them): a soak issues
    thousands, which the timing manager once kept, and scanned on every report."""
    strategy, fake = run(ConcurrencyStrategy, workers=2, concurrency=4,
                         request_count=20_000)
    assert len(fake.leases) > 100  # many leases went out ...
    assert strategy.leases == {}  # ... and none is held once all are done
    assert sum(lease.count for _, lease in fake.leases) == strategy.issued == 20_000
