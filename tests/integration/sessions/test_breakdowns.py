"""Per-session and per-URL views of real runs (with the records manager's session, turn and
URL columns), and planned cancellations that do not mark the run cancelled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aiperf.dataset.breakdowns import sessions_of, turn_values, urls_of
from aiperf.mesh import Mesh
from tests.harness.session_server import SessionServer


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=2, command_timeout=20) as running:
        yield running


def test_each_session_shows_its_turns_in_order(mesh: Mesh) -> None:
    with SessionServer(delay_ms=5) as server:
        result = mesh.run(url=server.url, streaming=True, concurrency=3, conversation_num=5,
                          conversation_turn_mean=3, conversation_turn_delay_mean=10)
        assert server.stats()["violations"] == []
    sessions = sessions_of(result.records)
    assert [s.turns for s in sessions] == [3] * 5 and {s.errors for s in sessions} == {0}
    # Streamed from the run's table file: the same views as from its records as dicts.
    assert sessions == sessions_of(list(result.records)) == result.sessions
    # A session lasts at least its turns and the two think times between them.
    for s in sessions:
        assert s.duration_ms >= sum(s.request_latency_ms) + 2 * 10 - 1
        assert all(t is not None for t in s.time_to_first_token_ms)
    assert turn_values(result.records, "time_to_first_token", first_turn=1).size == 10
    assert not result.was_cancelled


def test_each_url_shows_what_it_served(mesh: Mesh) -> None:
    with SessionServer(require_session=False) as a, SessionServer(require_session=False) as b:
        result = mesh.run(url=a.url, urls=[a.url, b.url], concurrency=4, request_count=40)
    views = urls_of(result.records, [a.url, b.url])
    assert views == urls_of(list(result.records), [a.url, b.url]) == result.urls
    assert [v.requests for v in views] == [20, 20] and {v.errors for v in views} == {0}
    assert all(v.request_latency_p50_ms is not None for v in views)


def test_planned_cancellations_leave_the_run_uncancelled(mesh: Mesh) -> None:
    with SessionServer(require_session=False, delay_ms=100) as server:
        result = mesh.run(url=server.url, concurrency=2, request_count=20,
                          request_cancellation_rate=50, request_cancellation_delay=0.01)
    assert result.error_count == 10 and not result.was_cancelled


def test_the_result_exposes_sessions_and_urls(mesh: Mesh) -> None:
    with SessionServer() as a, SessionServer() as b:
        result = mesh.run(url=a.url, urls=[a.url, b.url], concurrency=2, conversation_num=4,
                          conversation_turn_mean=2)
    assert [s.turns for s in result.sessions] == [2, 2, 2, 2]
    # A session stays on one URL: whole sessions on each.
    assert sum(u.requests for u in result.urls) == 8
    assert {u.requests % 2 for u in result.urls} == {0}
