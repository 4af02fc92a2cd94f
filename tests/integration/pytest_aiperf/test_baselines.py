"""Baselines in real sessions: a run is stored, a later session compares with it, and the
comparison decides the outcome only through its gates (a REGRESSED row is a failed test).

Each test drives two or three pytester sessions against mock servers of known latency
(started here, passed as ``--aiperf-url``), so that the change between sessions is known:
FAST answers in 40 ms, SLOW in 52 ms (30 % slower), with the same profile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

FAST_MS = 40.0
SLOW_MS = 52.0  # 30 % slower
PROFILE = "request_count=240, concurrency=8"


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    from aiperf.mock_server import MockServerProcess

    with MockServerProcess(ttft_ms=FAST_MS, tokens=4) as fast, \
            MockServerProcess(ttft_ms=SLOW_MS, tokens=4) as slow:
        yield {"fast": fast.url, "slow": slow.url}


def load_test(marker: str = "", profile: str = PROFILE) -> str:
    return f"""
        import pytest

        @pytest.mark.aiperf({profile}{', ' + marker if marker else ''})
        def test_latency():
            pass
    """


def stored(project: pytest.Pytester) -> list[Path]:
    return sorted((project.path / ".aiperf").glob("*/*.json"))


def summary(project: pytest.Pytester, out: str = "out") -> dict:
    data = json.loads((project.path / out / "summary.json").read_text())
    return data["load_tests"][0]


def objective(record: dict, key: str) -> dict:
    return next(o for o in record["objectives"] if o["objective"] == key)


def test_save_then_compare_unchanged_passes_and_a_slower_server_regresses(
    project: pytest.Pytester, servers: dict[str, str]
) -> None:
    # The relative objective allows 15 %: the same server passes (or is INCONCLUSIVE, which
    # passes by default), one 30 % slower fails. The gate's margin is the session's flag.
    project.makepyfile(test_load=load_test(
        'slo={"request_latency.p50": "< baseline + 15 %"}'))
    saved = project.runpytest_inprocess("--aiperf-url", servers["fast"], "--aiperf-save",
                                        "main")
    saved.assert_outcomes(passed=1)  # no baseline yet: the relative objective is skipped
    saved.stdout.fnmatch_lines([
        "*WARNING test_latency: request_latency.p50: skipped: no stored baseline (latest)*",
        "*STORED test_latency: .aiperf*0001_main.json",
    ])
    files = stored(project)
    assert [f.name for f in files] == ["0001_main.json"], files
    assert json.loads(files[0].read_text())["test_id"] == "test_load.py::test_latency"

    same = project.runpytest_inprocess("--aiperf-url", servers["fast"], "--aiperf-compare",
                                       "main", "--aiperf-compare-fail",
                                       "request_latency.p50:20%", "--aiperf-artifacts", "out")
    same.assert_outcomes(passed=1)
    same.stdout.fnmatch_lines(["vs baseline:",
                               "*test_latency: vs baseline 0001_main, saved *"])
    record = summary(project)
    row = record["comparisons"][0]
    assert row["rule"] == "request_latency.p50:20%" and row["gated"], row
    assert row["status"] in ("UNCHANGED", "INCONCLUSIVE"), row
    relative = objective(record, "request_latency.p50")
    assert relative["verdict"] in ("PASS", "INCONCLUSIVE"), relative
    assert "baseline 0001_main" in relative["note"]
    assert record["outcome"] == "PASS"
    assert len(stored(project)) == 1  # comparing stores nothing

    slower = project.runpytest_inprocess("--aiperf-url", servers["slow"], "--aiperf-compare",
                                         "main", "--aiperf-compare-fail",
                                         "request_latency.p50:10%", "--aiperf-artifacts", "out")
    slower.assert_outcomes(failed=1)
    slower.stdout.fnmatch_lines([
        "aiperf: 1 of 2 objectives breached; 1 of 1 gates REGRESSED vs baseline",
        "request_latency.p50 * ms*< baseline + 15 %*FAIL*",
        "*request_latency.p50 * ms * ms  +* % [[]+*, +*[]]  REGRESSED (margin 10%)",
        "test_latency * FAIL",
    ])
    record = summary(project)
    row = record["comparisons"][0]
    assert row["status"] == "REGRESSED"
    assert row["low"] / row["before"] > 0.15 and row["high"] / row["before"] < 0.45, row
    assert objective(record, "request_latency.p50")["verdict"] == "FAIL"
    assert record["outcome"] == "FAIL"


def test_changed_profile_is_not_compared_and_an_improvement_fails_only_when_asked(
    project: pytest.Pytester, servers: dict[str, str]
) -> None:
    gate = 'regress={"request_latency.p50": "10%"}'
    project.makepyfile(test_load=load_test(gate))
    project.runpytest_inprocess("--aiperf-url", servers["slow"],
                                "--aiperf-autosave").assert_outcomes(passed=1)
    assert [f.name for f in stored(project)] == ["0001_auto.json"]

    project.makepyfile(test_load=load_test(gate, "request_count=120, concurrency=4"))
    changed = project.runpytest_inprocess("--aiperf-url", servers["fast"],
                                          "--aiperf-artifacts", "out")
    changed.assert_outcomes(passed=1)  # nothing compared, so nothing gated
    changed.stdout.fnmatch_lines([
        "*test_latency: not compared with baseline 0001_auto, saved *: the profile changed "
        "(concurrency, request_count)",
    ])
    record = summary(project)
    assert record["baseline"]["status"] == "profile changed"
    assert record["baseline"]["differing"] == ["concurrency", "request_count"]
    assert record["comparisons"] == []
    assert any("request_latency.p50:10%: skipped" in w for w in record["warnings"])

    project.makepyfile(test_load=load_test(gate))
    faster = project.runpytest_inprocess("--aiperf-url", servers["fast"])
    faster.assert_outcomes(passed=1)  # reported, and passes by default
    faster.stdout.fnmatch_lines(["*request_latency.p50 * -* % [[]-*, -*[]]  IMPROVED*"])
    gated = project.runpytest_inprocess("--aiperf-url", servers["fast"],
                                        "-o", "aiperf_fail_on_improvement=true")
    gated.assert_outcomes(failed=1)
    gated.stdout.fnmatch_lines([
        "aiperf: 1 of 1 gates IMPROVED vs baseline "
        "(aiperf_fail_on_improvement: store a new baseline)",
        "test_latency * FAIL",
    ])


def test_require_baseline_without_a_stored_run_fails_and_xdist_workers_store_their_tests(
    project: pytest.Pytester, servers: dict[str, str]
) -> None:
    # Two workers, load tests on each: they fail for want of a baseline, saying how to
    # store one, and each worker stores its own tests' runs (they were judged) for the next
    # session; a run whose test failed for another reason is not stored, and says so.
    project.makepyfile(test_load=f"""
        import pytest

        @pytest.mark.parametrize("case", ["a", "b", "c"])
        @pytest.mark.aiperf({PROFILE})
        def test_latency(case, aiperf_result):
            assert case != "c", "the test's own assertion"
    """)
    result = project.runpytest_subprocess(
        "-n", "2", "-p", "no:cacheprovider", "--aiperf-url", servers["fast"],
        "--aiperf-autosave", "-o", "aiperf_require_baseline=true", "--aiperf-compare")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*WARNING test_latency[[]c[]]: not stored as a baseline: the "
                                 "test failed outside its verdicts (AssertionError)"])
    result.stdout.fnmatch_lines([
        "aiperf: no stored baseline to compare with (aiperf_require_baseline):",
        "test_latency[[]?[]]: no stored baseline (latest) for this test in *.aiperf",
        "store one with --aiperf-save NAME or --aiperf-autosave",
    ])
    out = result.stdout.str().split("aiperf load tests")[1]
    for case in "ab":
        assert f"test_latency[{case}]" in out
        result.stdout.fnmatch_lines([f"*STORED test_latency[[]{case}[]]: .aiperf*0001_auto.json"])
    assert out.count(" FAIL") == 3
    assert sorted(json.loads(f.read_text())["test_id"] for f in stored(project)) == [
        "test_load.py::test_latency[a]", "test_load.py::test_latency[b]"]


def test_a_bad_gate_on_the_command_line_is_a_usage_error_naming_it(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_load=load_test())
    result = project.runpytest_inprocess("--aiperf-compare-fail", "request_latency.p50:10")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aiperf-compare-fail / aiperf_compare_fail: regression "
                                 "rule 'request_latency.p50:10': *has no unit*"])


def test_bad_gates_and_relative_objectives_in_a_marker_are_collection_errors(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(test_gate="""
        import pytest

        @pytest.mark.aiperf(request_count=4, regress={"time_to_first_token.p99": "10%"})
        def test_gate_needs_streaming():
            pass
    """, test_relative="""
        import pytest

        @pytest.mark.aiperf(request_count=4, slo={"request_latency.max": "< baseline + 1 %"})
        def test_relative_max():
            pass
    """)
    result = project.runpytest_inprocess("--collect-only", "--continue-on-collection-errors")
    result.stdout.fnmatch_lines([
        "*test_gate_needs_streaming: invalid @pytest.mark.aiperf: regress rule "
        "'time_to_first_token.p99:10%' needs a streaming profile*",
    ])
    result.stdout.fnmatch_lines([
        "*test_relative_max: invalid @pytest.mark.aiperf: objective 'request_latency.max': "
        "a relative objective needs the avg or a percentile*"])
    assert result.ret != pytest.ExitCode.OK


def test_the_storage_is_relative_to_the_ini_file_and_the_bare_compare_means_latest(
    project: pytest.Pytester,
) -> None:
    project.makeini("""
        [pytest]
        asyncio_default_fixture_loop_scope = function
        aiperf_storage = perf/baselines
        aiperf_storage_keep = 3
        aiperf_compare_fail =
            request_latency.p50:10%
            request_throughput:-5%
    """)
    project.makeconftest("""
        def pytest_configure(config):
            from pytest_aiperf.fixtures import SESSION_KEY
            baseline = config.stash[SESSION_KEY].settings.baseline
            print("STORAGE", baseline.storage, "KEEP", baseline.keep, "COMPARE",
                  baseline.compare, "RULES", list(baseline.rules), "SAVE", baseline.save)
    """)
    project.makepyfile(test_load=load_test())
    result = project.runpytest_inprocess("-s", "--collect-only", "--aiperf-autosave",
                                         "--aiperf-compare")
    result.stdout.fnmatch_lines([
        f"STORAGE {project.path / 'perf' / 'baselines'} KEEP 3 COMPARE latest RULES "
        "['request_latency.p50:10%', 'request_throughput:-5%'] SAVE auto"])
