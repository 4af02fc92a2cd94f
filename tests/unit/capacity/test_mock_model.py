"""The mock's capacity model (``aiperf.mock_server.slots.true_capacity``) checked against a
discrete-event simulation of its FIFO queue: closed-loop clients with random start offsets
and client gaps, fixed service time, N slots."""

from __future__ import annotations

import heapq
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.mock_server.config import MockServerConfig
from aiperf.mock_server.slots import (
    CapacityUndetermined,
    queued_ttft_ms,
    rate_fail_margin,
    service_ms,
    true_capacity,
)


def simulate_closed_loop(clients: int, slots: int, service: float, ttft: float,
                         requests: int, gap_ms: float, seed: int) -> np.ndarray:
    """TTFTs (ms) of ``requests`` through N FIFO slots: each client sends its next request
    ``gap`` (uniform in [0, gap_ms]) after its last one ended."""
    rng = random.Random(seed)
    arrivals = [(rng.uniform(0, service), c) for c in range(clients)]  # a ramp
    heapq.heapify(arrivals)
    free = [0.0] * slots
    out = []
    while len(out) < requests:
        at, client = heapq.heappop(arrivals)
        start = max(at, heapq.heappop(free))  # FIFO: the earliest arrival takes a slot
        heapq.heappush(free, start + service)
        out.append(start - at + ttft)
        heapq.heappush(arrivals, (start + service + rng.uniform(0, gap_ms), client))
    return np.asarray(out)


def simulate_constant_rate(rate: float, slots: int, service: float, ttft: float,
                           requests: int) -> np.ndarray:
    free = [0.0] * slots
    out = []
    for i in range(requests):
        at = i * 1000.0 / rate
        start = max(at, heapq.heappop(free))
        heapq.heappush(free, start + service)
        out.append(start - at + ttft)
    return np.asarray(out)


def mock(slots: int, ttft: float = 40.0, itl: float = 0.0, tokens: int = 1) -> MockServerConfig:
    return MockServerConfig(ttft_ms=ttft, itl_ms=itl, tokens=tokens, slots=slots)


def test_service_time_is_the_streamed_request_latency() -> None:
    assert service_ms(mock(2, ttft=20, itl=5, tokens=8)) == 55.0
    assert service_ms(mock(2, ttft=40)) == 40.0


@settings(max_examples=40, deadline=None)
@given(slots=st.integers(1, 8), seed=st.integers(0, 10_000),
       percentile=st.sampled_from([90.0, 95.0, 99.0]))
def test_queued_bound_holds_one_client_above_the_slots(slots: int, seed: int,
                                                       percentile: float) -> None:
    config = mock(slots, ttft=40, itl=3, tokens=8)  # S = 61 ms
    service = service_ms(config)
    requests = 400
    ttfts = simulate_closed_loop(slots + 1, slots, service, 40.0, requests, 2.0, seed)
    bound = queued_ttft_ms(config, percentile, requests=requests, client_ms=2.0)
    assert np.percentile(ttfts, percentile, method="lower") >= bound - 1e-9
    # and at the slot count, nobody waits
    unqueued = simulate_closed_loop(slots, slots, service, 40.0, requests, 2.0, seed)
    assert np.max(unqueued) == 40.0


def test_more_clients_wait_longer() -> None:
    config = mock(4, ttft=40, itl=3, tokens=8)
    service = service_ms(config)
    p95 = [np.percentile(simulate_closed_loop(c, 4, service, 40.0, 600, 2.0, 1), 95)
           for c in range(5, 12)]
    assert p95 == sorted(p95)


def test_true_capacity_over_concurrency_is_the_slot_count() -> None:
    config = mock(2, ttft=40)
    # window: unqueued 40 + client 2, queued bound at c=3
    assert queued_ttft_ms(config, 95, requests=100) == pytest.approx(
        40 + ((40 / 2 - 2) * (97 / 100) - 0.05 * 40) / 0.95)
    assert true_capacity(config, 50, percentile=95, requests=100) == 2
    assert true_capacity(mock(4, ttft=80), 90, percentile=95, requests=100) == 4
    assert true_capacity(config, 39, percentile=95) == 0  # even alone, too slow


def test_a_threshold_the_model_cannot_place_is_refused() -> None:
    with pytest.raises(CapacityUndetermined, match="within the client's 2 ms"):
        true_capacity(mock(2, ttft=40), 41, percentile=95)
    with pytest.raises(CapacityUndetermined, match="choose one in"):
        true_capacity(mock(2, ttft=40), 70, percentile=95)


def test_random_latencies_and_missing_slots_are_refused() -> None:
    with pytest.raises(ValueError, match="no capacity limit"):
        true_capacity(MockServerConfig(ttft_ms=40), 50)
    with pytest.raises(ValueError, match="fixed TTFT and ITL"):
        true_capacity(MockServerConfig(ttft_ms=40, ttft_stddev_ms=5, slots=2), 50)
    with pytest.raises(ValueError, match="over must be"):
        true_capacity(mock(2), 50, over="users")


def test_true_capacity_over_a_constant_rate() -> None:
    config = mock(2, ttft=40)
    capacity = true_capacity(config, 50, percentile=95, over="request_rate")
    assert capacity == 50.0  # N / S
    below = simulate_constant_rate(capacity * 0.99, 2, 40.0, 40.0, 300)
    assert np.max(below) == 40.0
    margin = rate_fail_margin(config, 50, percentile=95, requests=300)
    assert 0 < margin < 0.01
    above = simulate_constant_rate(capacity * (1 + 2 * margin), 2, 40.0, 40.0, 300)
    assert np.percentile(above, 95) > 50
