"""Parsing: the marker's capacity claim, ``--slo`` strings, goodput from objectives."""

from __future__ import annotations

from typing import Any

import pytest

from aiperf.capacity.cli import parse_slo
from aiperf.capacity.probe import derived_goodput
from pytest_aiperf.capacity import (
    CapacityClaim,
    CapacityClaimError,
    claim_line,
    parse_claim,
    pop_claim,
    probe_summary,
)
from pytest_aiperf.profile import LoadTestSpecError, claimed_profile
from pytest_aiperf.slo import SLOError, Verdict, parse_objective


def test_a_claim_and_its_headroom() -> None:
    claim = parse_claim({"concurrency": ">= 16"}, True)
    assert claim == CapacityClaim("concurrency", 16, 1.25)
    assert claim.headroom_point() == 20
    assert claim.text == "capacity >= 16 concurrent"
    assert parse_claim({"concurrency": 3}, 1.1).headroom_point() == 4  # at least one more
    rate = parse_claim({"request_rate": ">=20.5"}, 2)
    assert rate.headroom_point() == 41.0 and rate.value(20.5) == 20.5
    assert parse_claim({"concurrency": "8"}).headroom_point() is None


@pytest.mark.parametrize("capacity, headroom, message", [
    ({"users": ">= 3"}, None, "over concurrency or request_rate"),
    ({"concurrency": "<= 3"}, None, "is not '>= N'"),
    ({"concurrency": ">= 2.5"}, None, "whole number"),
    ({"request_rate": ">= 0"}, None, "positive"),
    ({"concurrency": ">= 2", "request_rate": ">= 1"}, None, "must be one of"),
    ("concurrency >= 2", None, "must be one of"),
    ({"concurrency": ">= 2"}, 0.9, "factor above 1"),
    ({"concurrency": ">= 2"}, "yes", "factor above 1"),
])
def test_bad_claims_say_what_is_wrong(capacity: Any, headroom: Any, message: str) -> None:
    with pytest.raises(CapacityClaimError, match=message):
        parse_claim(capacity, headroom)


def test_headroom_without_a_claim() -> None:
    with pytest.raises(CapacityClaimError, match="needs a capacity claim"):
        pop_claim({"headroom": True})
    assert pop_claim({"headroom": False}) is None


def test_the_claim_sets_the_profile_and_extends_by_default() -> None:
    profile: dict[str, Any] = {"streaming": True}
    policy: dict[str, Any] = {}
    claim = claimed_profile(profile, {"capacity": {"concurrency": ">= 4"}}, policy)
    assert claim is not None and profile["concurrency"] == 4
    assert policy == {"inconclusive": "extend"}
    kept = {"inconclusive": "pass"}
    claimed_profile({}, {"capacity": {"concurrency": ">= 4"}}, kept)
    assert kept == {"inconclusive": "pass"}  # the marker's own choice stands
    with pytest.raises(LoadTestSpecError, match="leave it to the claim"):
        claimed_profile({"concurrency": 8}, {"capacity": {"concurrency": ">= 4"}}, {})
    with pytest.raises(LoadTestSpecError, match="takes no request_rate"):
        claimed_profile({"request_rate": 8}, {"capacity": {"concurrency": ">= 4"}}, {})
    assert claimed_profile({}, {}, {}) is None


def test_the_verdict_line() -> None:
    objective = parse_objective("time_to_first_token.p99", "< 250 ms")
    ok = Verdict(objective, 200.0, "PASS", 500, 500, (190.0, 210.0), 0.95, "os")
    bad = Verdict(objective, 330.0, "FAIL", 500, 500, (312.0, 355.0), 0.95, "os")
    claim = parse_claim({"concurrency": ">= 16"}, True)
    at = probe_summary(16, [ok], "concurrency")
    above = probe_summary(20, [bad], "concurrency")
    assert at == ("PASS", "all objectives PASS")
    assert claim_line(claim, at[0], at[1], (20, above[1])) == (
        "capacity >= 16 concurrent: PASS (at 16: all objectives PASS; at 20: "
        "time_to_first_token.p99 FAIL [312.00, 355.00] ms)")
    invalid = probe_summary(16, [ok], "concurrency", "INVALID", "worker_cpu: 99 %\nmore")
    assert invalid == ("INVALID", "INVALID: worker_cpu: 99 %")


def test_slo_strings() -> None:
    ttft = parse_slo("time_to_first_token.p99<250ms")
    assert (ttft.key, ttft.op, ttft.threshold, ttft.unit) == (
        "time_to_first_token.p99", "<", 250.0, "ms")
    errors = parse_slo(" request_error_rate <= 1% ")
    assert (errors.op, errors.threshold) == ("<=", 1.0)
    assert parse_slo("request_latency.p90 < 1.5 s").threshold == 1500.0
    with pytest.raises(SLOError, match="is not METRIC"):
        parse_slo("time_to_first_token.p99 is fast")
    with pytest.raises(SLOError, match="unknown metric"):
        parse_slo("ttft.p99<250ms")
    later = parse_slo("time_to_first_token.p99[turn>=2] < 250 ms")
    assert (later.key, later.op, later.threshold) == (
        "time_to_first_token.p99[turn>=2]", "<", 250.0)
    assert later.turns is not None
    # A bar every request must meet: an objective on some turns is not one.
    assert derived_goodput([later], streams=True, produces_tokens=True) == {}


def test_goodput_from_the_objectives() -> None:
    objectives = [parse_slo("time_to_first_token.p99<250ms"),
                  parse_slo("time_to_first_token.p50<100ms"),
                  parse_slo("request_latency.p90<2s"),
                  parse_slo("request_error_rate<=1%"),  # not per request
                  parse_slo("output_token_throughput_per_user.p50>20tokens/s/user"),
                  parse_slo("inter_token_latency.p99>1ms")]  # a floor on a latency: not good
    assert derived_goodput(objectives, streams=True, produces_tokens=True) == {
        "time_to_first_token": 100.0, "request_latency": 2000.0,
        "output_token_throughput_per_user": 20.0}
    # without streaming TTFT is not measured: only request latency
    assert derived_goodput(objectives[:3], streams=False, produces_tokens=True) == {
        "request_latency": 2000.0}


@pytest.mark.parametrize(("text", "key"), [
    ("time_to_first_token.p99[turn>=2]<250ms", "time_to_first_token.p99[turn>=2]"),
    ("time_to_first_token.p99 [turn>=2] < 250 ms", "time_to_first_token.p99 [turn>=2]"),
    ("time_to_first_token.p99[turn >= 2]>=250ms", "time_to_first_token.p99[turn >= 2]"),
])
def test_slo_strings_on_some_turns(text: str, key: str) -> None:
    # --slo reads a turn objective as the marker's slo= does (a space before the bracket)
    objective = parse_slo(text)
    assert objective.key == key and objective.turns is not None
    assert objective.threshold == 250.0


@pytest.mark.parametrize(("text", "says"), [
    ("time_to_first_token.p99[turn>=2]@10s<250ms", "takes no window"),
    ("[turn>=2]<1s", "names no metric"),
    ("time_to_first_token.p99[turn>2]<250ms", "[turn==N], [turn>=N], [turn<=N]"),
])
def test_a_bad_turn_slo_string_gets_the_turn_objectives_reason(text: str, says: str) -> None:
    # not "is not METRIC[.STAT] OP NUMBER[UNIT]", which has no bracket to correct
    with pytest.raises(SLOError) as caught:
        parse_slo(text)
    assert says in str(caught.value)


def test_the_slo_form_names_the_turn_bracket() -> None:
    with pytest.raises(SLOError, match=r"\[\[turn>=N\]\]"):
        parse_slo("time_to_first_token.p99 is fast")
