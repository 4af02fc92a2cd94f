"""A capacity probe of a multi-turn profile sized by ``conversation_num``: it runs whole
sessions (every turn of each, not a request count that cuts them), at least one per slot,
against a server that checks every turn's history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from aiperf.capacity import Budget, Ledger
from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import ProbeRunner
from aiperf.mesh import Mesh
from pytest_aiperf.policy import VerdictPolicy
from tests.harness.session_server import SessionServer

TURNS = 3


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(workers=1, command_timeout=30) as running:
        yield running


@pytest.fixture
def server() -> Iterator[SessionServer]:
    with SessionServer(header="X-Session-ID", delay_ms=2) as running:
        yield running


def _runner(mesh: Mesh, url: str, sessions: int) -> ProbeRunner:
    profile: dict[str, Any] = {
        "url": url, "model": "m", "streaming": True, "isl": 5, "osl": 2,
        "conversation_num": sessions, "conversation_turn_mean": TURNS,
        "session_header": "X-Session-ID"}
    # a generous threshold: the probe passes on its first look, so every session the
    # server saw is one of this run's
    return ProbeRunner(mesh.run, profile,
                       [parse_slo("time_to_first_token.p50[turn>=2]<10s")],
                       over="concurrency",
                       policy=VerdictPolicy(inconclusive="extend", validity="off"))


@pytest.mark.parametrize("sessions, point, expected", [
    (8, 2, 8),    # the profile's own sessions, each to its last turn
    (3, 5, 5),    # raised to one per slot: three sessions never hold five in flight
])
def test_a_multi_turn_probe_runs_whole_sessions(
        mesh: Mesh, server: SessionServer, sessions: int, point: int,
        expected: int) -> None:
    ledger = Ledger(Budget(max_requests=1000))
    probe = _runner(mesh, server.url, sessions)(point, ledger)
    stats = server.stats()
    assert stats["violations"] == []
    assert probe.status == "PASS", (probe.cause, probe.verdicts)
    assert probe.looks == 1
    # every session whole: `expected` sessions of TURNS answered turns, nothing else sent
    assert sorted(stats["sessions"].values()) == [TURNS] * expected
    assert probe.requests == expected * TURNS == ledger.requests
    (verdict,) = probe.verdicts
    assert verdict.count == expected * (TURNS - 1)  # the turns the objective reads
