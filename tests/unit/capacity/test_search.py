"""The search against a simulated server whose capacity is known: a probe passes exactly
when its point is at most the capacity (monotone), and costs a fixed number of requests
and seconds on a fake clock."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.capacity import Budget, BudgetExhausted, CapacityResult, Ledger, Probe, run_search
from aiperf.capacity.search import Strategy
from pytest_aiperf.slo import Verdict, parse_objective

TTFT = parse_objective("time_to_first_token.p99", "< 250 ms")


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class SimulatedServer:
    """Passes at most ``capacity``; above it, FAIL. Every probe costs ``requests`` and
    ``seconds`` (checked against the ledger first, as the real probe runner does)."""

    capacity: float
    clock: Clock = field(default_factory=Clock)
    requests: int = 100
    seconds: float = 5.0
    all_errors_from: float = math.inf
    invalid_from: float = math.inf
    undecided: set[float] = field(default_factory=set)
    probed: list[float] = field(default_factory=list)

    def __call__(self, point: float, ledger: Ledger) -> Probe:
        why = ledger.fits(self.requests, self.seconds)
        if why is not None:
            raise BudgetExhausted(why)
        self.probed.append(point)
        self.clock.now += self.seconds
        ledger.spend(self.requests)
        if point >= self.all_errors_from:
            return Probe(point, "ERROR", self.requests,
                         cause=f"every request failed ({self.requests} of {self.requests})"
                               "\n  500 injected error")
        if point >= self.invalid_from:
            return Probe(point, "INVALID", self.requests,
                         cause="worker_cpu: a worker used 99 % of a core")
        if point in self.undecided:
            status = "INCONCLUSIVE"
        else:
            status = "PASS" if point <= self.capacity else "FAIL"
        low = 100.0 if status == "PASS" else 300.0
        verdict = Verdict(TTFT, low + 10, status, self.requests, self.requests,
                          (low, low + 20), 0.95, "order statistics")
        return Probe(point, status, self.requests, [verdict], looks=1)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=700))
def test_concurrency_finds_the_exact_capacity(capacity: int) -> None:
    server = SimulatedServer(capacity)
    result = run_search(server, over="concurrency", low=1, high=1024, tolerance=0.1,
                        clock=server.clock)
    assert result.max_passing is not None and result.min_failing is not None
    # within the tolerance, on the right sides of the truth
    assert result.max_passing <= capacity < result.min_failing
    assert result.min_failing <= max(result.max_passing * 1.1, result.max_passing + 1)
    assert result.converged
    # few probes: doubling (log2) then bisection (log2 of the bracket over the tolerance)
    assert len(result.probes) <= 2 * math.ceil(math.log2(capacity + 1)) + 2
    assert result.requests == 100 * len(result.probes)
    assert len(set(server.probed)) == len(server.probed)  # no point probed twice


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=0.6, max_value=900.0))
def test_request_rate_brackets_the_capacity_within_the_tolerance(capacity: float) -> None:
    server = SimulatedServer(capacity)
    result = run_search(server, over="request_rate", low=0.5, high=1000.0, tolerance=0.1,
                        clock=server.clock)
    assert result.max_passing is not None and result.min_failing is not None
    assert result.max_passing <= capacity < result.min_failing
    assert result.min_failing <= result.max_passing * 1.1 + 1e-9


def test_passes_at_the_maximum_and_fails_at_the_minimum() -> None:
    top = run_search(SimulatedServer(10_000), over="concurrency", low=1, high=100)
    assert (top.max_passing, top.min_failing, top.converged) == (100, None, True)
    assert "passes at the maximum" in top.stopped
    bottom = run_search(SimulatedServer(0.5), over="concurrency", low=1, high=100)
    assert (bottom.max_passing, bottom.min_failing) == (None, 1)
    assert len(bottom.probes) == 1 and "fails at the minimum" in bottom.stopped


def test_the_request_budget_is_never_exceeded() -> None:
    server = SimulatedServer(300, requests=100)
    result = run_search(server, over="concurrency", low=1, high=1024,
                        budget=Budget(max_requests=450), clock=server.clock)
    assert result.requests == 400 <= 450
    assert len(result.probes) == 4
    assert result.stopped.startswith("request budget: 50 of 450 left")
    assert not result.converged and result.max_passing == 8 and result.min_failing is None


def test_the_time_budget_is_never_exceeded() -> None:
    server = SimulatedServer(300, seconds=10.0)
    result = run_search(server, over="concurrency", low=1, high=1024,
                        budget=Budget(max_seconds=35.0), clock=server.clock)
    assert server.clock.now == 30.0 <= 35.0
    assert result.seconds == 30.0
    assert result.stopped.startswith("time budget")


def test_the_probe_budget() -> None:
    result = run_search(SimulatedServer(300), over="concurrency", low=1, high=1024,
                        budget=Budget(max_probes=3))
    assert len(result.probes) == 3 and result.stopped == "probe budget: 3 probes run"


def test_a_probe_whose_requests_all_fail_stops_the_search_with_the_cause() -> None:
    server = SimulatedServer(300, all_errors_from=16)
    result = run_search(server, over="concurrency", low=1, high=1024)
    assert server.probed == [1, 2, 4, 8, 16]  # nothing after the failing probe
    assert result.error is not None and "every request failed" in result.error
    assert result.stopped == "stopped at 16 concurrent: every request failed (100 of 100)"
    assert result.max_passing == 8 and result.min_failing is None


def test_an_invalid_probe_is_the_clients_limit() -> None:
    server = SimulatedServer(300, invalid_from=32)
    result = run_search(server, over="concurrency", low=1, high=1024)
    assert result.client_limit == 32 and result.max_passing == 16
    assert result.min_failing is None  # the server was never seen to fail
    assert "a limit of the client, not of the server" in result.stopped
    assert "worker_cpu" in result.stopped


def test_an_inconclusive_probe_counts_as_failing_unless_asked() -> None:
    strict = run_search(SimulatedServer(300, undecided={64}), over="concurrency", low=1,
                        high=1024)
    assert strict.min_failing is not None and strict.min_failing <= 64
    assert strict.max_passing is not None and strict.max_passing < 64
    lenient = run_search(SimulatedServer(300, undecided={64}), over="concurrency", low=1,
                         high=1024, inconclusive_counts_as="pass")
    assert lenient.max_passing is not None and lenient.max_passing <= 300 < (
        lenient.min_failing or 0)


def test_a_non_monotone_answer_keeps_the_earlier_bracket() -> None:
    strategy = Strategy(1, 100, 0.1)
    strategy.record(4, True)
    strategy.record(8, False)
    strategy.record(10, True)  # above a failure: the bracket stays
    assert (strategy.max_passing, strategy.min_failing) == (4, 8)


@pytest.mark.parametrize("kwargs, message", [
    ({"low": 0, "high": 10}, "0 < min <= max"),
    ({"low": 5, "high": 4}, "0 < min <= max"),
    ({"low": 1, "high": 10, "tolerance": 0}, "tolerance"),
    ({"low": 1.5, "high": 10}, "whole numbers"),
])
def test_bad_bounds_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Strategy(**kwargs)  # type: ignore[arg-type]


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="max_requests must be above 0"):
        Budget(max_requests=0)


def test_capacity_json(tmp_path: Path) -> None:
    server = SimulatedServer(12)
    result = run_search(server, over="concurrency", low=1, high=64, clock=server.clock)
    path = result.write(tmp_path / "out")
    data = json.loads(path.read_text())
    assert path.name == "capacity.json"
    assert data["over"] == "concurrency"
    assert (data["max_passing"], data["min_failing"]) == (12, 13)
    assert [p["point"] for p in data["probes"]] == server.probed
    probe = data["probes"][0]
    assert probe["requests"] == 100 and probe["status"] == "PASS"
    assert probe["objectives"][0]["objective"] == "time_to_first_token.p99"
    assert probe["objectives"][0]["verdict"] == "PASS"
    assert probe["objectives"][0]["interval"] == [100.0, 120.0]
    again = CapacityResult.from_dict(data)
    assert again.to_dict() == data
    table = "\n".join(result.table())
    assert "time_to_first_token.p99 FAIL [300.00, 320.00] ms" in table
    assert result.headline().startswith("capacity 12 concurrent (fails at 13): ")
