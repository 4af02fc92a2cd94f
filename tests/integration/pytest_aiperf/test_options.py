"""Where settings come from: the command line beats ini for every key, relative paths are
relative to the file (or directory) that names them, and objectives are checked against
what the profile measures, at collection."""

from __future__ import annotations

from pathlib import Path

import pytest

DEAD_URL = "http://127.0.0.1:9"


def test_a_command_line_profile_url_beats_the_ini_url(project: pytest.Pytester) -> None:
    project.makeini(f"""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_workers = 1
        aiperf_url = {DEAD_URL}
        aiperf_profile =
            model=from-ini
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=2)
        def test_target(aiperf_result):
            print("URL", aiperf_result.config.url, "MODEL", aiperf_result.config.model)
    """)
    from aiperf.mock_server import MockServerProcess

    with MockServerProcess(tokens=2) as server:
        result = project.runpytest_inprocess("-s", "--aiperf-profile", f"url={server.url}",
                                             "--aiperf-model", "from-cli")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*URL {server.url} MODEL from-cli"])


def test_a_command_line_slo_file_is_relative_to_the_working_directory(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=8, concurrency=4)  # p50 bounds need n >= 5
        def test_strict():
            pass
    """)
    sub = project.mkdir("sub")
    (sub / "slo.yaml").write_text('"*test_strict": {request_latency.p50: "< 1 ns"}\n')
    (project.path / "slo.yaml").write_text('"*test_strict": {request_latency.p50: "< 60 s"}\n')
    monkeypatch.chdir(sub)
    result = project.runpytest_inprocess("--rootdir", str(project.path), str(project.path),
                                         "--aiperf-slo-file", "slo.yaml")
    result.assert_outcomes(failed=1)  # sub/slo.yaml, not the rootdir's
    result.stdout.fnmatch_lines(["*FAIL test_strict: request_latency.p50 = *needs < 1 ns"])


def test_an_ini_slo_file_is_relative_to_the_ini_file(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_workers = 1
        aiperf_slo_file = slo.yaml
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=8, concurrency=4)  # p50 bounds need n >= 5
        def test_strict():
            pass
    """)
    (project.path / "slo.yaml").write_text('"*test_strict": {request_latency.p50: "< 1 ns"}\n')
    monkeypatch.chdir(project.mkdir("elsewhere"))
    result = project.runpytest_inprocess(str(project.path))
    result.assert_outcomes(failed=1)


def test_a_missing_slo_file_is_named_by_its_absolute_path(project: pytest.Pytester) -> None:
    project.makepyfile("def test_nothing(): pass")
    result = project.runpytest_inprocess("--aiperf-slo-file", "nope.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert str(project.path / "nope.yaml") in result.stderr.str()


def test_a_marker_input_file_is_relative_to_its_test_file(project: pytest.Pytester) -> None:
    tests = project.mkdir("tests")
    (tests / "prompts.jsonl").write_text('{"text": "hello there"}\n{"text": "and again"}\n')
    (tests / "test_data.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.aiperf(request_count=2, input_file='prompts.jsonl')\n"
        "def test_from_file(aiperf_result):\n"
        "    assert aiperf_result.request_count == 2\n")
    (tests / "test_missing.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.aiperf(request_count=2, input_file='missing.jsonl')\n"
        "def test_missing():\n"
        "    pass\n")
    result = project.runpytest_inprocess("tests/test_data.py")  # run from the rootdir
    result.assert_outcomes(passed=1)
    missing = project.runpytest_inprocess("tests/test_missing.py")
    assert missing.ret == pytest.ExitCode.INTERRUPTED
    missing.stdout.fnmatch_lines([f"*input_file '{tests / 'missing.jsonl'}' does not exist*"])


def test_the_mock_is_not_started_when_every_load_test_names_a_url(
    project: pytest.Pytester,
) -> None:
    project.makeconftest("""
        import pytest
        from pytest_aiperf.fixtures import SESSION_KEY

        @pytest.hookimpl(tryfirst=True)
        def pytest_sessionfinish(session):
            print("MOCK STARTED", session.config.stash[SESSION_KEY]._mock is not None)
    """)
    from aiperf.mock_server import MockServerProcess

    with MockServerProcess(tokens=2) as server:
        project.makepyfile(f"""
            import pytest

            @pytest.mark.aiperf(url="{server.url}", request_count=2)
            def test_own_url():
                pass
        """)
        result = project.runpytest_inprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*MOCK STARTED False*"])


@pytest.mark.parametrize(("marker", "expected"), [
    ('slo={"adj_request_latency": "< 100 ms"}', "adj_request_latency has only percentiles "
     "and a count"),
    ('slo={"request_latency.count": ">= 3 ms"}', "a count is a number of requests"),
    ('goodput={"inter_chunk_latency": 5}, streaming=True',
     "goodput metric 'inter_chunk_latency' has many values per request"),
    ('goodput={"time_to_first_token": 100}', "goodput metric 'time_to_first_token' needs a "
     "streaming profile"),
    ("duration=0", "benchmark_duration: 0 must be more than zero"),
    ('test_timeout="soon"', "test_timeout: 'soon' is not a duration"),
])  # fmt: skip
def test_objectives_the_profile_cannot_measure_are_collection_errors(
    project: pytest.Pytester, marker: str, expected: str
) -> None:
    project.makepyfile(f"""
        import pytest

        @pytest.mark.aiperf(request_count=3, {marker})
        def test_bad():
            pass
    """)
    result = project.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*::test_bad: invalid @pytest.mark.aiperf:*"])
    assert expected in result.stdout.str()


def test_an_slo_file_pattern_that_matches_no_test_is_warned_about(
    project: pytest.Pytester,
) -> None:
    project.makefile(".yaml", slo="""
        "*::test_real": {request_latency.p99: "< 60 s"}
        "*::test_renamed_long_ago": {request_latency.p99: "< 1 s"}
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=2)
        def test_real():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-slo-file", "slo.yaml", "-k", "not real")
    result.assert_outcomes(deselected=1, warnings=1)  # a deselected test was collected
    result.stdout.fnmatch_lines(["*SLO file pattern '*::test_renamed_long_ago' matches no "
                                 "collected test*"])
    assert "'*::test_real'" not in result.stdout.str()


def test_sessions_of_users_who_never_use_asyncio_show_no_loop_scope_warning(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\naiperf_workers = 1\n")  # no asyncio key at all
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, warnings=0)
    assert "is unset" not in result.stdout.str() + result.stderr.str()
    # Without the plugin, pytest-asyncio gives its warning (the check above can fail).
    plain = pytester.runpytest_subprocess("-p", "no:aiperf")
    plain.assert_outcomes(passed=1, warnings=1)
    assert "asyncio_default_fixture_loop_scope" in plain.stdout.str()


def test_paths_in_errors_are_absolute(project: pytest.Pytester) -> None:
    result = project.runpytest_inprocess("--aiperf-slo-file", str(Path("a") / "b.yaml"))
    assert str(project.path / "a" / "b.yaml") in result.stderr.str()


@pytest.mark.parametrize(("args", "env", "expected"), [
    ((), None, "from-ini-profile"),
    ((), "from-env", "from-env"),  # the environment beats every ini value
    (("--aiperf-profile", "api_key=from-cli-profile"), "from-env", "from-cli-profile"),
    (("--aiperf-api-key", "from-cli", "--aiperf-profile", "api_key=from-cli-profile"),
     "from-env", "from-cli"),
])  # fmt: skip
def test_the_api_key_follows_the_same_precedence_as_every_key(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
    env: str | None, expected: str
) -> None:
    for name in ("AIPERF_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    if env:
        monkeypatch.setenv("AIPERF_API_KEY", env)
    project.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_profile =
            api_key=from-ini-profile
    """)
    project.makepyfile("""
        from pytest_aiperf.fixtures import SESSION_KEY

        def test_key(pytestconfig):
            settings = pytestconfig.stash[SESSION_KEY].settings
            assert "api_key" not in settings.profile_defaults
            print("KEY", settings.api_key.get_secret_value().upper())
    """)
    result = project.runpytest_inprocess("-s", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*KEY {expected.upper()}"])
