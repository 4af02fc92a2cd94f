"""The probe runner on synthetic runs (the engine's own aggregation of made-up records, no
network): budgets inside extend, a FAIL ends extend, all errors, goodput and attainment."""

from __future__ import annotations

from typing import Any

import pytest

from aiperf.capacity import Budget, BudgetExhausted, Ledger
from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import ProbeRunner, requests_per_run
from aiperf.common.config import UserConfig
from aiperf.results import ProfileResult
from pytest_aiperf.policy import VerdictPolicy
from tests.harness.synthetic_runs import synthetic_result


class FakeMesh:
    """Synthetic runs whose TTFT median grows past 4 clients (lognormal, sigma 0.5)."""

    def __init__(self, error_share: float = 0.0) -> None:
        self.error_share = error_share
        self.configs: list[UserConfig] = []

    def run(self, config: UserConfig) -> ProfileResult:
        self.configs.append(config)
        concurrency = config.concurrency or 1
        return synthetic_result(config.resolved_request_count() or 10, slots=concurrency,
                                error_share=self.error_share,
                                ttft_ms=20.0 * max(1.0, concurrency / 4),
                                seed=len(self.configs), goodput=config.goodput,
                                request_timeout_seconds=config.request_timeout_seconds)


PROFILE: dict[str, Any] = {"url": "http://127.0.0.1:9", "model": "m", "streaming": True}
POLICY = VerdictPolicy(inconclusive="extend", validity="off")


def runner(mesh: FakeMesh, *slo: str, **profile: Any) -> ProbeRunner:
    return ProbeRunner(mesh.run, {**PROFILE, **profile}, [parse_slo(s) for s in slo],
                       over="concurrency", policy=POLICY)


def test_extend_stays_inside_the_request_budget() -> None:
    mesh = FakeMesh()
    # p99 of lognormal(20 ms, 0.5) is 64 ms: a 62 ms threshold cannot be decided quickly
    probe = runner(mesh, "time_to_first_token.p99<62ms", request_count=100)(
        4, Ledger(Budget(max_requests=250)))
    assert probe.looks == 2 and probe.requests == 200  # 4 looks wanted, 2 fit
    assert probe.confidence == pytest.approx(1 - 0.05 / 2)
    assert probe.status in ("INCONCLUSIVE", "FAIL", "PASS")
    assert all(c.concurrency == 4 and c.request_count == 100 for c in mesh.configs)


def test_a_probe_that_does_not_fit_is_not_run() -> None:
    mesh = FakeMesh()
    ledger = Ledger(Budget(max_requests=50))
    with pytest.raises(BudgetExhausted, match="request budget"):
        runner(mesh, "time_to_first_token.p90<60ms", request_count=100)(4, ledger)
    assert mesh.configs == [] and ledger.requests == 0


def test_a_fail_ends_extend() -> None:
    mesh = FakeMesh()
    # TTFT median 80 ms at 16 clients: p50 < 30 ms fails at once; the error rate objective
    # (no errors in 100) stays undecided at 1 %, but cannot save the probe
    probe = runner(mesh, "time_to_first_token.p50<30ms", "request_error_rate<=1%",
                   request_count=100)(16, Ledger(Budget()))
    assert probe.status == "FAIL" and probe.looks == 1 and len(mesh.configs) == 1
    statuses = {v.objective.key: v.status for v in probe.verdicts}
    assert statuses == {"time_to_first_token.p50": "FAIL", "request_error_rate": "INCONCLUSIVE"}


def test_goodput_and_attainment_come_from_the_objectives() -> None:
    mesh = FakeMesh()
    probe = runner(mesh, "time_to_first_token.p90<40ms", request_count=200)(
        2, Ledger(Budget()))
    assert mesh.configs[0].goodput == {"time_to_first_token": 40.0}
    assert probe.attainment is not None and 0.8 < probe.attainment <= 1.0
    low, high = probe.attainment_interval  # type: ignore[misc]
    assert low is not None and high is not None and low <= probe.attainment <= high
    assert probe.goodput is not None and probe.goodput > 0
    assert probe.metrics["request_throughput"] > 0


def test_all_errors_make_an_error_probe_with_the_cause() -> None:
    probe = runner(FakeMesh(error_share=1.0), "time_to_first_token.p90<40ms",
                   request_count=20)(2, Ledger(Budget()))
    assert probe.status == "ERROR" and probe.requests == 20
    assert probe.cause is not None and probe.cause.startswith("every request failed (20 of 20)")


def test_the_default_request_count_bounds_the_percentiles() -> None:
    probe_runner = runner(FakeMesh(), "time_to_first_token.p99<100ms")
    # p99 at 98.75 % (4 looks) needs 437 values for an upper bound: twice that
    assert probe_runner.default_request_count(1) == 874
    assert probe_runner.default_request_count(100) == 1000  # AIPerf's 10 x concurrency


def test_the_search_key_is_not_set_twice() -> None:
    with pytest.raises(ValueError, match="takes no request_rate"):
        ProbeRunner(FakeMesh().run, {**PROFILE, "request_rate": 5},
                    [parse_slo("request_latency.p90<1s")], over="concurrency")
    with pytest.raises(ValueError, match="at least one objective"):
        ProbeRunner(FakeMesh().run, PROFILE, [], over="concurrency")


def test_warm_up_requests_count_against_the_budget() -> None:
    mesh = FakeMesh()
    ledger = Ledger(Budget(max_requests=130))
    probe = runner(mesh, "time_to_first_token.p50<60ms", request_count=100,
                   warmup_request_count=20)(2, ledger)
    assert ledger.requests == 120 and probe.looks == 1  # a second chunk would pass 130


def test_a_probe_of_whole_sessions_keeps_them_and_budgets_their_turns() -> None:
    sessions = {"conversation_num": 6, "conversation_turn_mean": 3}
    probe_runner = runner(FakeMesh(), "time_to_first_token.p90[turn>=2]<60ms", **sessions)
    at_two, at_ten = probe_runner.profile_at(2), probe_runner.profile_at(10)
    assert "request_count" not in at_two and at_two["conversation_num"] == 6
    assert at_ten["conversation_num"] == 10  # one session per slot at least
    assert requests_per_run(UserConfig.build(**{**PROFILE, **at_two})) == 18
    # a request count or a duration sizes the run as given; the sessions are its pool
    counted = runner(FakeMesh(), "time_to_first_token.p90<60ms", request_count=40,
                     **sessions).profile_at(10)
    assert counted["request_count"] == 40 and counted["conversation_num"] == 6
    # the budget is checked against every turn of every session, before anything is sent
    mesh = FakeMesh()
    ledger = Ledger(Budget(max_requests=17))
    with pytest.raises(BudgetExhausted, match="needs 18"):
        runner(mesh, "time_to_first_token.p90[turn>=2]<60ms", **sessions)(2, ledger)
    assert mesh.configs == []
