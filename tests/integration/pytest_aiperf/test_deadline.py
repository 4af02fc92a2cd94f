"""A server that accepts and never answers cannot stall a session: each load test has a
deadline (aiperf_test_timeout) that its requests are fitted into, as error records, and a
backstop that stops a run that overruns anyway."""

from __future__ import annotations

import time

import pytest


def test_a_silent_server_gives_error_records_within_the_test_deadline(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.fixture
        def silent(aiperf_mock_server):
            return aiperf_mock_server(fault="stall", stall_seconds=300)

        def test_silent(aiperf, silent):
            aiperf.run(url=silent, request_count=3, test_timeout="6s")
    """)
    # 6 s, not 3: the first run of a session starts the mesh inside the test's deadline
    # (the alarm fires at the deadline + 50 %), and on a busy 2-core box that start took
    # the 1.5 s of slack a 3 s deadline leaves ("ran past its aiperf_test_timeout of 3 s").
    # The requests still get 1.6 s each, not the 600 s default.
    started = time.monotonic()
    result = project.runpytest_inprocess()
    elapsed = time.monotonic() - started
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "aiperf: EndpointError: every request to http://127.0.0.1:* failed (3 of 3)*",
        "*3 x *request timeout*",
        "*request timeout was cut to * s so that the run fits aiperf_test_timeout=6 s*",
    ])
    assert elapsed < 25  # mesh start-up included; the requests got 1.6 s each, not 600


def test_durations_are_written_the_same_way_and_the_closest_setting_wins(
    project: pytest.Pytester,
) -> None:
    project.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_workers = 1
        aiperf_test_timeout = 1m
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=4)
        def test_from_options(aiperf_result):
            print("TIMEOUT", aiperf_result.config.request_timeout_seconds)

        @pytest.mark.aiperf(request_count=4, test_timeout=20)
        def test_from_marker(aiperf_result):
            print("TIMEOUT", aiperf_result.config.request_timeout_seconds)
    """)
    ini_only = project.runpytest_inprocess("-s", "-k", "options")
    ini_only.assert_outcomes(passed=1)
    ini_only.stdout.fnmatch_lines(["*TIMEOUT 12.5"])  # (60 s - 10 s margin) / 4 requests
    result = project.runpytest_inprocess("-s", "--aiperf-test-timeout", "30s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*TIMEOUT 6.0", "*TIMEOUT 4.0"])  # 24 / 4, then 16 / 4


def test_a_bad_duration_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile("def test_nothing(): pass")
    result = project.runpytest_inprocess("--aiperf-test-timeout", "soon")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "aiperf_test_timeout: 'soon' is not a duration" in result.stderr.str()


def test_a_run_past_its_deadline_is_stopped_and_the_next_one_is_exact(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        def test_overrun(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(fault="stall", stall_seconds=300)
            # a per-request timeout set by the test is kept: only the backstop can stop it
            aiperf.run(url=url, request_count=2, request_timeout_seconds=120,
                       test_timeout="2s")

        @pytest.mark.aiperf(request_count=5)
        def test_next(aiperf_result):
            assert aiperf_result.request_count == 5 and aiperf_result.error_count == 0
    """)
    started = time.monotonic()
    result = project.runpytest_inprocess()
    elapsed = time.monotonic() - started
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "aiperf: RunError: load test ran past its aiperf_test_timeout of 2 s; the run was "
        "stopped",
        "test_overrun*ERROR",
        "test_next*PASS",
    ])
    assert elapsed < 30


def test_profile_defaults_take_the_markers_spellings(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(concurrency=2)
        def test_timed(aiperf_result):
            print("DURATION", aiperf_result.config.benchmark_duration,
                  aiperf_result.config.endpoint_type)
    """)
    result = project.runpytest_inprocess("-s", "--aiperf-profile", "duration=500ms",
                                         "--aiperf-profile", "endpoint=completions")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*DURATION 0.5 completions"])
    bad = project.runpytest_inprocess("--aiperf-profile", "duration=0s")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "--aiperf-profile: benchmark_duration: '0s' must be more than zero" in (
        bad.stderr.str())
