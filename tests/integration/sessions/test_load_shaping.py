"""Ramps, planned cancellations and several URLs through the mesh, against real servers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from aiperf.common.codec import CANCELLATION_CODE, CANCELLATION_TYPE
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from tests.harness.session_server import SessionServer


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=2, command_timeout=20) as running:
        yield running


@pytest.fixture(scope="module")
def slow_server() -> Iterator[MockServerProcess]:
    # About 0.2 s a request, streamed (first token at 150 ms) or not.
    with MockServerProcess(tokens=4, ttft_ms=150, itl_ms=12) as server:
        yield server


def _starts_s(result) -> np.ndarray:
    starts = np.array(sorted(r["metadata"]["request_start_ns"] for r in result.records))
    return (starts - starts[0]) / 1e9


def test_a_concurrency_ramp_starts_the_slots_one_by_one(
        mesh: Mesh, slow_server: MockServerProcess) -> None:
    # Four slots over 0.6 s: they start at 0, 0.2, 0.4 and 0.6 s, each request 0.2 s.
    result = mesh.run(url=slow_server.url, concurrency=4, concurrency_ramp_duration=0.6,
                      request_count=16)
    assert result.invariant["ok"] and result.error_count == 0
    starts = _starts_s(result)
    # Before the second slot's time only the first slot's first request started (the
    # lower bounds hold on any machine: a ramp never starts a slot early).
    assert (starts < 0.15).sum() == 1
    assert (starts < 0.35).sum() <= 3
    # Without a ramp all four start together.
    flat = _starts_s(mesh.run(url=slow_server.url, concurrency=4, request_count=8))
    assert (flat < 0.15).sum() == 4


def test_a_request_rate_ramp_sends_fewer_requests_early(
        mesh: Mesh, slow_server: MockServerProcess) -> None:
    result = mesh.run(url=slow_server.url, request_rate=40, arrival_pattern="constant",
                      request_rate_ramp_duration=1.0, request_count=40)
    assert result.invariant["ok"] and result.error_count == 0
    starts = _starts_s(result)
    # The rate grows linearly over the first second: the first half second carries about
    # a quarter of what a second at the target would, the second half three quarters.
    first, second = (starts < 0.5).sum(), ((starts >= 0.5) & (starts < 1.0)).sum()
    assert first < second
    assert first <= 10  # 40/s unramped would send 20 in half a second


@pytest.mark.parametrize("streaming", [False, True])
def test_planned_cancellations_are_exact_recorded_as_cancelled_and_never_lost(
        mesh: Mesh, slow_server: MockServerProcess, streaming: bool) -> None:
    result = mesh.run(url=slow_server.url, concurrency=4, request_count=40,
                      streaming=streaming, request_cancellation_rate=25,
                      request_cancellation_delay=0.05)
    assert result.invariant["ok"], result.invariant
    assert len(result.records) == 40
    cancelled = [r for r in result.records if r.get("error")]
    # 25 % of ids 0..39: exactly ten, every one AIPerf's cancellation, none a server error.
    assert len(cancelled) == 10
    assert all(r["error"]["code"] == CANCELLATION_CODE
               and r["error"]["type"] == CANCELLATION_TYPE for r in cancelled)
    assert all(r["metadata"]["was_cancelled"] for r in cancelled)
    # AIPerf's request_count counts the requests that succeeded.
    assert result.error_count == 10 and result.request_count == 30


def test_cancelled_turns_leave_no_exchange_and_the_session_goes_on(mesh: Mesh) -> None:
    with SessionServer(delay_ms=100) as server:
        result = mesh.run(url=server.url, concurrency=2, conversation_num=4,
                          conversation_turn_mean=4, request_cancellation_rate=25,
                          request_cancellation_delay=0.02)
        stats = server.stats()
    assert result.invariant["ok"] and len(result.records) == 16
    assert stats["violations"] == []
    assert sum(1 for r in result.records if r.get("error")) == 4
    # Every cancelled turn is missing from its session's history, the rest are there.
    assert sum(stats["sessions"].values()) == 12


def test_several_urls_share_the_requests_round_robin(mesh: Mesh) -> None:
    with SessionServer(require_session=False) as a, SessionServer(require_session=False) as b:
        result = mesh.run(url=a.url, urls=[a.url, b.url], concurrency=4, request_count=40)
        counts = [server.stats()["requests"] for server in (a, b)]
    assert result.invariant["ok"] and result.error_count == 0
    assert counts == [20, 20]


@pytest.mark.parametrize("streaming", [False, True])
def test_sessions_at_a_request_rate_keep_their_order_and_history(
        mesh: Mesh, streaming: bool) -> None:
    with SessionServer(delay_ms=20) as server:
        result = mesh.run(url=server.url, streaming=streaming, request_rate=100,
                          request_count=40, conversation_num=5, conversation_turn_mean=4,
                          conversation_turn_delay_mean=10)
        stats = server.stats()
    assert stats["violations"] == []
    assert result.invariant["ok"] and len(result.records) == 40
    assert result.error_count == 0
    # Turns came in order: every session the server saw has its turns answered in a row.
    assert sum(stats["sessions"].values()) == 40 and stats["max_in_flight"] == 1
    assert max(stats["sessions"].values()) > 1  # later turns were sent, not only firsts
