"""Every run inside a test is accounted for, reported and enforced; the summary's verdict
always agrees with the test's outcome."""

from __future__ import annotations

import json

import pytest


def test_aiperf_run_with_a_breached_slo_fails_the_test(project: pytest.Pytester) -> None:
    project.makepyfile("""
        def test_adhoc_slo(aiperf):
            aiperf.run(streaming=True, request_count=8,
                       slo={"time_to_first_token.p50": "< 0.001 ms"})
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "aiperf: 1 of 1 objectives breached",
        "time_to_first_token.p50*[[]*,*[]]*< 0.001 ms*FAIL*n=8*whole run",
        "test_adhoc_slo*chat stream c=1 n=8*FAIL",
    ])
    assert "PASS" not in result.stdout.str().split("aiperf load tests")[1]


def test_two_runs_in_one_test_are_two_rows_and_both_are_enforced(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        def test_two_runs(aiperf):
            aiperf.run(request_count=6, slo={"request_latency.p50": "< 60 s"})
            aiperf.run(request_count=8, concurrency=2, slo={"request_latency.p50": "< 1 ns"})
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "run 1 (chat c=1 n=6):",
        "request_latency.p50*< 60 s*PASS*n=6*",
        "run 2 (chat c=2 n=8):",
        "request_latency.p50*< 1 ns*FAIL*n=8*",
        "test_two_runs *chat c=1 n=6 *FAIL",
        "test_two_runs (run 2)*chat c=2 n=8 *FAIL",
    ])
    summary = json.loads((project.path / "out" / "summary.json").read_text())
    assert [(t["run"], t["requests_sent"], t["outcome"]) for t in summary["load_tests"]] == [
        (1, 6, "FAIL"), (2, 8, "FAIL")]
    assert len([p for p in (project.path / "out").iterdir() if p.is_dir()]) == 2


def test_a_run_where_no_request_completed_is_an_error_naming_the_cause(
    project: pytest.Pytester,
) -> None:
    # The case: a server that accepts and never answers, a duration run and an
    # error-rate objective. It must not pass; it errors, saying what happened. (The run
    # ends by itself after the duration and grace; the test timeout is only a backstop,
    # and 4 s of it ran out once at load average 10.)
    project.makepyfile("""
        import pytest

        def test_stalled(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(fault="stall", stall_seconds=120)
            aiperf.run(url=url, duration="1s", test_timeout="10s",
                       slo={"request_error_rate": "<= 1 %"})
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert ("every request to http://127.0.0.1:" in out
            or "no request to http://127.0.0.1:" in out), out
    result.stdout.fnmatch_lines(["*objectives were not evaluated*",
                                 "test_stalled*ERROR",
                                 "*ERROR test_stalled: EndpointError: *"])


def test_a_broken_credit_invariant_is_an_error_with_the_counts(
    project: pytest.Pytester,
) -> None:
    # The engine cannot be made to lose a record on demand: the result is doctored as a
    # records manager that lost one would report it.
    project.makeconftest("""
        import pytest
        from aiperf.mesh import Mesh

        _run = Mesh.run

        def lossy_run(self, *args, **kwargs):
            result = _run(self, *args, **kwargs)
            result.invariant = {"ok": False, "credits_issued": 4, "records_received": 3,
                                "missing_credit_ids": [2], "duplicate_credit_ids": [],
                                "unexpected_credit_ids": []}
            return result

        @pytest.fixture(autouse=True)
        def _lossy(monkeypatch):
            monkeypatch.setattr(Mesh, "run", lossy_run)
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=4)
        def test_lossy():
            pass
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "aiperf: RunError: credit invariant broken: 4 requests issued, 3 records received; "
        "missing credit ids [[]2[]]*",
        "test_lossy*ERROR",
    ])


def test_run_warnings_reach_the_report_and_summary_json(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest
        from aiperf.mock_server.responders import ChatResponder

        class InflatedUsage(ChatResponder):
            '''Reports three times the completion tokens it sends.'''

            def body(self, request_id, text, plan):
                import json
                data = json.loads(super().body(request_id, text, plan))
                data["usage"]["completion_tokens"] *= 3
                return json.dumps(data).encode()

        def test_mismatch(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(responders=[InflatedUsage()], tokens=8)
            aiperf.run(url=url, request_count=3, osl=8)
    """)
    result = project.runpytest_inprocess("-rA", "--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*aiperf test_mismatch*",
        "warning: server usage and the tokenizer disagree*",
        "*WARNING test_mismatch: server usage and the tokenizer disagree*",
    ])
    summary = json.loads((project.path / "out" / "summary.json").read_text())
    assert "tokenizer disagree" in summary["load_tests"][0]["warnings"][0]


def test_a_load_test_without_objectives_checks_that_its_requests_succeeded(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=4)
        def test_healthy():
            pass

        @pytest.mark.aiperf(request_count=10)
        def test_half_failing():
            pass

        def test_adhoc_half_failing(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(error_rate=0.5, seed=1)
            result = aiperf.run(url=url, request_count=10)
            assert result.request_count > 0  # checks something, but not the errors

        def test_adhoc_errors_expected(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(error_rate=0.5, seed=1)
            aiperf.run(url=url, request_count=10, failed_request_threshold=80)
    """)
    project.makeconftest("""
        def pytest_aiperf_profile(item, profile):
            if item.name == "test_half_failing":
                from aiperf.mock_server import MockServerProcess
                server = MockServerProcess(error_rate=0.5, seed=1)
                item.config.add_cleanup(server.stop)
                profile["url"] = server.start()
    """)
    result = project.runpytest_inprocess("-rA")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "request_error_rate (implicit)*<= 0 %*FAIL*",
        "test_healthy*PASS",
        "test_half_failing*FAIL",
        "test_adhoc_half_failing*FAIL",
        "test_adhoc_errors_expected*PASS",
    ])


def test_cancellations_the_profile_asks_for_do_not_fail_the_implicit_check(
    project: pytest.Pytester,
) -> None:
    """They are errors as AIPerf counts them (code 499), but asked for: the implicit
    "requests succeeded" check leaves them out, and still counts every other failure."""
    project.makepyfile("""
        def test_planned(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(ttft_ms=200)
            result = aiperf.run(url=url, streaming=True, request_count=20, concurrency=4,
                                request_cancellation_rate=25, request_cancellation_delay=0)
            assert result.error_count == result.planned_cancellation_count == 5

        def test_planned_and_failing(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(ttft_ms=200, error_rate=0.5, seed=1)
            aiperf.run(url=url, streaming=True, request_count=20, concurrency=4,
                       request_cancellation_rate=25, request_cancellation_delay=0)
    """)
    result = project.runpytest_inprocess("-rA")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "request_error_rate (implicit)*<= 0 %*PASS*",
        "*5 cancellations the profile asked for are not counted*",
    ])
    result.stdout.fnmatch_lines(["request_error_rate (implicit)*<= 0 %*FAIL*"])
    assert "the request timeout was cut" not in result.stdout.str()


def test_verdicts_print_as_text_not_reprs(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=6, slo={"request_latency.p50": "< 60 s"})
        def test_show(aiperf_result):
            assert aiperf_result.slo == []
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*PASS request_latency.p50 = * ms [[]*, *[]], needs < 60 s "
                                 "(n=6, 6 requests sent)*"])
    assert "Verdict(" not in result.stdout.str() and "Objective(key=" not in (
        result.stdout.str())


def test_the_verdict_column_is_the_tests_outcome(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        def test_skips_after_its_run(aiperf):
            aiperf.run(request_count=2)
            pytest.skip("decided after the run")

        def test_fails_on_its_own_assert(aiperf):
            aiperf.run(request_count=6, slo={"request_latency.p50": "< 60 s"})
            assert False, "the test's own check"

        @pytest.mark.xfail(reason="known slow", strict=True)
        @pytest.mark.aiperf(request_count=6, slo={"request_latency.p50": "< 1 ns"})
        def test_known_breach():
            pass
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(skipped=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["test_skips_after_its_run*SKIP",
                                 "test_fails_on_its_own_assert*FAIL",
                                 "test_known_breach*XFAIL"])
    # a test that failed on its own still shows its run's objectives
    result.stdout.fnmatch_lines(["*aiperf test_fails_on_its_own_assert*",
                                 "request_latency.p50*< 60 s*PASS*n=6*"])


def test_the_mesh_logs_to_pytests_log_capture(project: pytest.Pytester) -> None:
    project.makepyfile("""
        def test_logged(aiperf):
            aiperf.run(request_count=2)  # the mesh starts here, inside the test
            assert False, "show the captured log"
    """)
    result = project.runpytest_inprocess("--log-level=INFO")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*Captured log call*",
                                 "INFO *aiperf.mesh*mesh ready*"])
    assert "mesh ready" not in result.stderr.str()  # not raw on the terminal
