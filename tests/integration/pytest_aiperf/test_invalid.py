"""INVALID: a profile the client cannot deliver on this machine is a test ERROR with the
reason and a suggestion, never a PASS or FAIL; a comfortable profile on the same machine is
judged as usual."""

from __future__ import annotations

import json

import pytest

PROFILES = """
import pytest

# One worker asked for 30,000 requests/s: six times what one worker sends on this machine
# (docs/validity.md), so the schedule slips and the achieved rate falls far short.
@pytest.mark.aiperf(request_rate=30000, request_count=2000, osl=2,
                    slo={"request_latency.p50": "< 60 s"})
def test_overloaded():
    pass

@pytest.mark.aiperf(request_rate=20, request_count=30, osl=2,
                    slo={"request_latency.p50": "< 60 s"})
def test_comfortable():
    pass
"""


def test_an_undeliverable_profile_is_an_error_and_a_comfortable_one_is_judged(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(PROFILES)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out",
                                         "--aiperf-validity", "error")  # the default
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(["*aiperf: INVALID: the client could not deliver the profile*",
                                 "test_overloaded*INVALID"])
    assert "more workers" in result.stdout.str()  # the suggestion comes with the reason
    records = {r["nodeid"].split("::")[-1]: r for r in json.loads(
        (project.path / "out" / "summary.json").read_text())["load_tests"]}
    overloaded, comfortable = records["test_overloaded"], records["test_comfortable"]
    assert overloaded["outcome"] == "INVALID" and overloaded["invalid"]
    assert overloaded["objectives"] == []  # never judged
    assert comfortable["outcome"] == "PASS" and comfortable["invalid"] is None
    assert comfortable["validity"]["valid"] is True


def test_warn_judges_an_undeliverable_profile_with_a_warning(project: pytest.Pytester) -> None:
    project.makepyfile(PROFILES)
    result = project.runpytest_inprocess("--aiperf-validity", "warn", "-k", "overloaded")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*WARNING test_overloaded: INVALID run (aiperf_validity=warn)*"])
