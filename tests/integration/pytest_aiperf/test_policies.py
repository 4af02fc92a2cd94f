"""What INCONCLUSIVE does (pass, fail, xfail, extend), the reports' interval fields,
repeat=N, the collection-time planner, the steady window and windowed objectives: real
pytest sessions against the built-in mock (every request ~75 ms, so a "< 60 s" objective is
true and a "< 1 ms" one false by construction; only n decides whether a bound exists)."""

from __future__ import annotations

import json

import pytest

# p99 needs n >= 299 for an upper bound at 95 %: with 12 requests "< 60 s" can only be
# INCONCLUSIVE, whatever the machine's speed.
UNDECIDED = """
import pytest

@pytest.mark.aiperf(request_count=12, concurrency=4{extra},
                    slo={{"request_latency.p99": "< 60 s"}})
def test_undecided():
    pass
"""


def _summary(project: pytest.Pytester) -> list[dict]:
    return json.loads((project.path / "out" / "summary.json").read_text())["load_tests"]


def test_inconclusive_passes_by_default_with_a_warning_naming_the_n(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(UNDECIDED.format(extra=""))
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1, warnings=2)  # the planner's, then the verdict's
    result.stdout.fnmatch_lines([
        "*can never PASS with 12 requests*n >= 299*",
        "*request_latency.p99 < 60 s is INCONCLUSIVE in test_undecided*n=12*"
        "about 299 requests would decide it*",
        "  INCONCLUSIVE test_undecided: request_latency.p99 = *, needs < 60 s",
    ])
    objective, = _summary(project)[0]["objectives"]
    assert objective["verdict"] == "INCONCLUSIVE" and objective["n"] == 12
    assert objective["interval"][1] is None and objective["confidence"] == 0.95
    assert objective["method"].startswith("order statistics")
    assert objective["window"] == "whole run"


@pytest.mark.parametrize(("policy", "outcome"), [("fail", "failed"), ("xfail", "xfailed")])
def test_inconclusive_fails_or_xfails_when_asked(
    project: pytest.Pytester, policy: str, outcome: str
) -> None:
    project.makepyfile(UNDECIDED.format(extra=""))
    result = project.runpytest_inprocess(f"--aiperf-inconclusive={policy}",
                                         "--aiperf-artifacts", "out")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*INCONCLUSIVE*"])
    assert _summary(project)[0]["outcome"] == outcome.upper().removesuffix("ED")


def test_the_marker_key_beats_the_ini(project: pytest.Pytester) -> None:
    project.makepyfile(UNDECIDED.format(extra=', inconclusive="fail"'))
    ini = project.path / "tox.ini"
    ini.write_text(ini.read_text().rstrip("\n") + "\naiperf_inconclusive = pass\n")
    project.runpytest_inprocess().assert_outcomes(failed=1)


def test_extend_stops_as_soon_as_the_objective_is_decided(project: pytest.Pytester) -> None:
    # p90 "< 60 s": each look at 1 - 0.05/4 needs n >= 42 for the upper bound, so chunks of
    # 20 decide at the third look (60 requests), not the fourth.
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=20, concurrency=4, inconclusive="extend",
                            slo={"request_latency.p90": "< 60 s"})
        def test_extended():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1)
    record, = _summary(project)
    assert (record["looks"], record["requests_sent"], record["outcome"]) == (3, 60, "PASS")
    objective, = record["objectives"]
    assert (objective["verdict"], objective["n"]) == ("PASS", 60)
    assert objective["confidence"] == pytest.approx(1 - 0.05 / 4)
    assert "runs pooled" in objective["window"]


def test_extend_falls_back_to_the_final_policy_when_the_budget_is_spent(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=6, concurrency=3, inconclusive="extend",
                            slo={"request_latency.p99": "< 60 s"})
        def test_spent():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*1 of 1 objectives INCONCLUSIVE*"])
    record, = _summary(project)
    assert (record["looks"], record["requests_sent"], record["outcome"]) == (4, 24, "FAIL")


def test_a_false_objective_fails_with_its_interval_in_every_report(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=30, concurrency=5,
                            slo={"request_latency.p50": "< 1 ms"})
        def test_slow():
            pass
    """)
    step = project.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = project.runpytest_inprocess("--aiperf-artifacts", "out", "--junitxml=j.xml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["Objective*Measured*Interval*Threshold*Verdict*n*Window",
                                 "request_latency.p50*ms*[[]*, *[]]*< 1 ms*FAIL*n=30*whole run"])
    objective, = _summary(project)[0]["objectives"]
    low, high = objective["interval"]
    assert 1.0 < low <= objective["measured"] <= high and objective["verdict"] == "FAIL"
    junit = (project.path / "j.xml").read_text()
    for name in ("verdict", "measured", "interval", "confidence", "n", "method", "window"):
        assert f'name="aiperf.slo.request_latency.p50.{name}"' in junit
    assert "| request_latency.p50 |" in step.read_text() and "FAIL" in step.read_text()


def test_repeat_runs_the_profile_n_times_and_judges_across_runs(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=10, concurrency=5, repeat=3,
                            slo={"request_latency.p50": "< 60 s"})
        def test_repeated():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1)
    records = _summary(project)
    assert [r["run"] for r in records] == [1, 2, 3]
    across = records[-1]["objectives"][-1]
    assert across["window"] == "across 3 runs" and across["n"] == 3
    assert across["verdict"] == "PASS" and across["method"].startswith("t over 3 runs")
    # three per-run looks and the across-runs look share alpha: each at 1 - 0.05 / 4
    assert across["confidence"] == pytest.approx(1 - 0.05 / 4)
    assert records[0]["objectives"][0]["confidence"] == pytest.approx(1 - 0.05 / 4)


def test_the_planner_warns_at_collection_before_any_load(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=500, slo={"request_latency.p999": "< 1 s"})
        def test_tail():
            pass
    """)
    result = project.runpytest_inprocess("--collect-only")
    result.stdout.fnmatch_lines(["*request_latency.p999 < 1 s can never PASS with 500 "
                                 "requests*n >= 2995*"])


def test_steady_state_judges_the_steady_window_and_says_so(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=40, concurrency=2, steady_state=True,
                            slo={"request_latency.p50": "< 60 s"})
        def test_steady():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1)
    objective, = _summary(project)[0]["objectives"]
    assert objective["window"].startswith("steady state") and objective["verdict"] == "PASS"
    assert 0 < objective["n"] < 40  # ramp-up and ramp-down requests left out


def test_a_windowed_objective_shows_its_worst_window(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=60, concurrency=4,
                            slo={"request_latency.p50@0.3s": "< 60 s",
                                 "request_latency.p50@0.3 s": "< 1 ms"})
        def test_windows():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(failed=1)
    met, breached = _summary(project)[0]["objectives"]
    assert met["verdict"] == "PASS" and met["window"].startswith("worst: window ")
    assert breached["verdict"] == "FAIL" and breached["window"].startswith("worst: window ")
    assert "windows of 0.3 s" in breached["note"]
    result.stdout.fnmatch_lines(["request_latency.p50@0.3 s*< 1 ms*FAIL*worst: window *"])


def test_aiperf_run_takes_its_own_policy(project: pytest.Pytester) -> None:
    project.makepyfile("""
        def test_strict_run(aiperf):
            aiperf.run(request_count=12, concurrency=4, inconclusive="fail",
                       slo={"request_latency.p99": "< 60 s"})
    """)
    result = project.runpytest_inprocess()  # the session's default is pass
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*[[]aiperf_inconclusive=fail[]]*"])
