"""INVALID on real runs: one worker (a real process) asked for 30,000 requests/s against
the mock server in its own process cannot send them on this machine, and its validity
names what gave (schedule lag, achieved rate, its event loop); comfortable profiles on the
same mesh come out valid, with every worker's load measured."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerConfig, MockServerProcess
from aiperf.validity import Signal, Validity


@pytest.fixture(scope="module")
def server() -> Iterator[MockServerProcess]:
    with MockServerProcess(MockServerConfig(ttft_ms=5, itl_ms=1, tokens=4)) as running:
        yield running


@pytest.fixture(scope="module")
def one_worker() -> Iterator[Mesh]:
    with Mesh(workers=1, command_timeout=15) as running:
        yield running


def signals(validity: Validity) -> dict[str, Signal]:
    return {s.name: s for s in validity.signals}


def test_far_more_requests_per_second_than_one_worker_sends_is_invalid(
    one_worker: Mesh, server: MockServerProcess,
) -> None:
    # About 5,000 requests/s is what one worker sends here (docs/validity.md): 30,000
    # asked is six times that, so the schedule slips by hundreds of milliseconds.
    result = one_worker.run(url=server.url, request_rate=30_000, request_count=3000)
    validity = result.validity
    assert validity is not None and not validity.valid
    by_name = signals(validity)
    assert not by_name["schedule_lag_p99"].ok and not by_name["achieved_rate"].ok
    assert by_name["achieved_rate"].measured < 0.5 * 30_000
    reason = validity.reason()
    assert "schedule_lag_p99: credit_to_start_latency p99" in reason
    assert "more workers" in reason and "lower request_rate" in reason
    assert set(result.worker_load) == {"worker_0"}


def test_a_comfortable_rate_on_the_same_worker_is_valid(
    one_worker: Mesh, server: MockServerProcess,
) -> None:
    result = one_worker.run(url=server.url, request_rate=50, request_count=50)
    validity = result.validity
    assert validity is not None and validity.valid, validity.reason()
    by_name = signals(validity)
    assert set(by_name) == {"schedule_lag_p99", "achieved_rate", "event_loop_lag_p99",
                            "worker_cpu"}
    # Every signal was measured, not skipped: a valid verdict that checked nothing would
    # be a false PASS of the client.
    assert all(s.measured is not None for s in validity.signals)
    assert by_name["worker_cpu"].measured < 0.5


def test_a_comfortable_closed_loop_with_two_workers_is_valid_and_both_report() -> None:
    with MockServerProcess(MockServerConfig(ttft_ms=5, itl_ms=1, tokens=4)) as server, \
            Mesh(workers=2, command_timeout=15) as mesh:
        result = mesh.run(url=server.url, concurrency=4, request_count=200)
    validity = result.validity
    assert validity is not None and validity.valid, validity.reason()
    concurrency = signals(validity)["achieved_concurrency"]
    assert concurrency.measured is not None and concurrency.measured > 3
    assert set(result.worker_load) == {"worker_0", "worker_1"}
