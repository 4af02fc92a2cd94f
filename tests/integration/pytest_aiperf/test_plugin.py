"""The plugin from a user's seat: real pytest sessions against the built-in mock server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.harness import descendants, wait_gone

PASSING = """
import pytest

@pytest.mark.aiperf(streaming=True, concurrency=2, request_count=12, osl=8,
                    slo={"time_to_first_token.p50": "< 5 s", "request_error_rate": "<= 50 %"})
def test_chat_meets_slo(aiperf_result):
    assert aiperf_result["output_sequence_length"].avg == 8
    assert aiperf_result.metric("request_count") == 12
"""


def test_a_passing_slo_passes_and_shows_in_the_summary(project: pytest.Pytester) -> None:
    project.makepyfile(PASSING)
    result = project.runpytest_inprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        "*= aiperf load tests =*",
        "Test*Profile*req/s*TTFT p99*Lat p99*Err %*Verdict",
        "test_chat_meets_slo*chat stream c=2 n=12*PASS",
    ])
    assert descendants(os.getpid()) == [] or wait_gone(descendants(os.getpid())) == []


def test_a_breached_slo_fails_with_a_table_of_every_objective(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(streaming=True, concurrency=2, request_count=10, osl=4, slo={
            "time_to_first_token.p50": "< 1 us",
            "inter_token_latency.p50": "< 10 s",
            "request_throughput": "> 1000000 req/s",
        })
        def test_too_strict():
            pass
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "aiperf: 2 of 3 objectives breached",
        "Objective*Measured*Interval*Threshold*Verdict*n*Window",
        "time_to_first_token.p50*ms*[[]*]*< 1 us*FAIL*n=10*whole run",
        "inter_token_latency.p50*ms*[[]*]*< 10 s*PASS*n=*whole run",
        "request_throughput*requests/sec*[[]*]*> 1000000 req/s*FAIL*n=10*whole run",
        "*FAIL test_too_strict: time_to_first_token.p50 = *, needs < 1 us",
    ])


def test_an_unreachable_endpoint_is_an_error_not_a_failure(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(url="http://127.0.0.1:9", request_count=3,
                            slo={"request_latency.p99": "< 1 s"})
        def test_down():
            pass
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "aiperf: EndpointError: every request to http://127.0.0.1:9 failed (3 of 3)*",
        "*3 x ClientConnectorError*",
    ])
    assert "objectives breached" not in result.stdout.str()


@pytest.mark.parametrize(("marker", "expected"), [
    ('slo={"time_to_frist_token.p99": "< 1 s"}', "unknown metric 'time_to_frist_token'"),
    ('slo={"request_latency.p99": "< 1 parsec"}', "unit 'parsec' does not fit"),
    ('slo={"request_latency.p99": "about 1 s"}', "operators: <, <=, >, >="),
    ("concurency=4", "unknown key 'concurency'; allowed keys: "),
    ('slo={"time_to_first_token.p99": "< 1 s"}', "needs a streaming profile"),
])  # fmt: skip
def test_a_typo_is_a_collection_error_naming_the_test(
    project: pytest.Pytester, marker: str, expected: str
) -> None:
    project.makepyfile(f"""
        import pytest

        @pytest.mark.aiperf(request_count=5, {marker})
        def test_typo():
            pass
    """)
    result = project.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting*",
                                 "*test_a_typo_is_a_collection_error*::test_typo: invalid "
                                 "@pytest.mark.aiperf:*"])
    assert expected in result.stdout.str()
    assert "aiperf load tests" not in result.stdout.str()  # no load was sent


def test_parametrized_concurrency_runs_once_per_value(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.parametrize("concurrency", [1, 3])
        @pytest.mark.aiperf(request_count=6, slo={"request_error_rate": "< 1 %"})
        def test_ladder(concurrency, aiperf_result):
            assert aiperf_result.config.concurrency == concurrency
            assert aiperf_result.request_count == 6
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["test_ladder[[]1[]]*c=1 n=6*PASS",
                                 "test_ladder[[]3[]]*c=3 n=6*PASS"])


def test_markers_merge_from_module_and_class_down_to_the_function(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        pytestmark = pytest.mark.aiperf(request_count=4, osl=5,
                                        slo={"request_error_rate": "<= 0 %"})

        @pytest.mark.aiperf(concurrency=2, osl=6)
        class TestChat:
            @pytest.mark.aiperf(osl=7, slo={"request_latency.p99": "< 10 s"})
            def test_inner(self, aiperf_result):
                assert aiperf_result.config.concurrency == 2
                assert aiperf_result["output_sequence_length"].avg == 7
                assert {v.objective.key for v in aiperf_result.slo} == {
                    "request_error_rate", "request_latency.p99"}

            def test_class_level(self, aiperf_result):
                assert aiperf_result["output_sequence_length"].avg == 6
                assert aiperf_result.request_count == 4
    """)
    project.runpytest_inprocess().assert_outcomes(passed=2)


def test_objectives_from_an_slo_file_apply_by_node_id_and_markers_override(
    project: pytest.Pytester,
) -> None:
    project.makefile(".yaml", slo="""
        "test_*.py::test_from_file":
          request_latency.p50: "< 1 ns"
        "*::test_override*":
          request_latency.p50: "< 1 ns"
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=8, concurrency=4)
        def test_from_file():
            pass

        @pytest.mark.aiperf(request_count=8, concurrency=4, slo={"request_latency.p50": "< 60 s"})
        def test_override():
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-slo-file", "slo.yaml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAIL test_from_file: request_latency.p50 = *, needs < 1 ns"])


def test_the_summary_fits_100_columns_and_artifacts_are_written_per_test(
    project: pytest.Pytester,
) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.parametrize("concurrency", [1, 2])
        @pytest.mark.aiperf(streaming=True, request_count=4)
        def test_a_rather_long_test_name_that_goes_on_and_on_for_quite_a_while(concurrency):
            pass
    """)
    result = project.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    section = out[out.index("aiperf load tests"):]
    assert all(len(line) <= 100 for line in section.splitlines()[1:] if line.strip())
    out_dir = project.path / "out"
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [t["outcome"] for t in summary["load_tests"]] == ["PASS", "PASS"]
    test_dirs = sorted(p.name for p in out_dir.iterdir() if p.is_dir())
    assert len(test_dirs) == 2
    assert (out_dir / test_dirs[0] / "profile_export_aiperf.json").is_file()
    assert (out_dir / test_dirs[0] / "profile_export.jsonl").is_file()


def test_junit_xml_carries_metrics_and_verdicts(project: pytest.Pytester) -> None:
    project.makepyfile(PASSING)
    result = project.runpytest_inprocess("--junitxml", "junit.xml")
    result.assert_outcomes(passed=1)
    tree = ET.parse(project.path / "junit.xml")
    props = {p.get("name"): p.get("value") for p in tree.iter("property")}
    assert float(props["aiperf.request_throughput"]) > 0
    assert props["aiperf.request_count"] == "12"
    assert props["aiperf.slo.time_to_first_token.p50"].startswith("PASS ")
    assert props["aiperf.slo.time_to_first_token.p50.verdict"] == "PASS"
    assert props["aiperf.slo.request_error_rate.method"].startswith("Clopper")


def test_github_step_summary_gets_a_markdown_table(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = project.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    project.makepyfile(PASSING)
    project.runpytest_inprocess().assert_outcomes(passed=1)
    text = target.read_text()
    assert "| Test | Profile |" in text and "✅ PASS" in text


def test_disable_skips_load_tests_with_a_reason(project: pytest.Pytester) -> None:
    project.makepyfile(PASSING)
    result = project.runpytest_inprocess("--aiperf-disable", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*load tests are disabled by --aiperf-disable*"])


def test_p_no_aiperf_disables_everything(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=3)
        def test_plain():
            pass
    """)
    result = project.runpytest_inprocess("-p", "no:aiperf", "-W", "ignore")
    result.assert_outcomes(passed=1)
    assert "aiperf load tests" not in result.stdout.str()


def test_the_aiperf_fixture_runs_and_checks_ad_hoc(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import pytest

        def test_adhoc(aiperf, aiperf_mock_server):
            url = aiperf_mock_server(ttft_ms=30, tokens=4)
            result = aiperf.run(url=url, endpoint="chat", streaming=True, concurrency=2,
                                request_count=6)
            assert result["time_to_first_token"].p50 >= 30
            aiperf.check(result, {"time_to_first_token.p50": "< 10 s"})

        def test_caught_breach(aiperf):
            result = aiperf.run(request_count=8, concurrency=4)
            with pytest.raises(AssertionError, match="1 of 1 objectives breached"):
                aiperf.check(result, {"request_latency.p50": "< 1 ns"})
    """)
    result = project.runpytest_inprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "test_adhoc*PASS",
        "test_caught_breach*FAIL",
        "*FAIL test_caught_breach: request_latency.p50 = *needs < 1 ns",
    ])


def test_hooks_adjust_profiles_and_see_results(project: pytest.Pytester) -> None:
    project.makeconftest("""
        seen = []

        def pytest_aiperf_profile(item, profile):
            profile["request_count"] = 2

        def pytest_aiperf_result(item, result):
            seen.append(result.request_count)

        def pytest_aiperf_report(session, results):
            print("REPORT", [r.outcome for r in results], seen)
    """)
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=50)
        def test_scaled(aiperf_result):
            assert aiperf_result.request_count == 2
    """)
    result = project.runpytest_inprocess("-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*REPORT ?'PASS'? ?2?*", "test_scaled*chat c=1 n=2 *PASS"])


def test_help_lists_every_option_and_the_marker(project: pytest.Pytester) -> None:
    result = project.runpytest_inprocess("--help")
    for option in ("--aiperf-url", "--aiperf-model", "--aiperf-endpoint-type",
                   "--aiperf-api-key", "--aiperf-artifacts", "--aiperf-workers",
                   "--aiperf-slo-file", "--aiperf-disable", "--aiperf-profile"):
        assert option in result.stdout.str()
    assert "aiperf_url (string)" in result.stdout.str()
    markers = project.runpytest_inprocess("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.aiperf(**profile, slo={...}):*"])


def test_the_api_key_never_reaches_the_output(project: pytest.Pytester,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIPERF_API_KEY", "sk-top-secret")
    project.makepyfile(PASSING)
    result = project.runpytest_inprocess("-v", "--aiperf-artifacts", "out", "--junitxml", "j.xml")
    result.assert_outcomes(passed=1)
    assert "sk-top-secret" not in result.stdout.str() + result.stderr.str()
    for path in Path(project.path).rglob("*"):
        if path.is_file():
            assert "sk-top-secret" not in path.read_text(errors="ignore"), path


def _run_interrupted(project: pytest.Pytester, args: list[str], sig: int | None,
                     after: float) -> tuple[subprocess.Popen[bytes], list[int], float]:
    project.makepyfile("""
        import pytest

        @pytest.mark.aiperf(streaming=True, concurrency=4, benchmark_duration=60,
                            benchmark_grace_period=0)
        def test_long():
            pass
    """)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[3])))
    deadline = time.monotonic() + 30
    pids: list[int] = []
    while time.monotonic() < deadline and len(pids) < 6:  # controller + 5 services
        time.sleep(0.2)
        pids = descendants(proc.pid)
    time.sleep(after)
    sent = time.monotonic()
    if sig is not None:
        proc.send_signal(sig)
    return proc, pids, sent


def test_ctrl_c_stops_the_run_and_the_mesh_within_two_seconds(
    project: pytest.Pytester,
) -> None:
    proc, pids, sent = _run_interrupted(project, [], signal.SIGINT, after=0.5)
    try:
        proc.wait(10)
        survivors = wait_gone(pids, timeout=max(0.1, 2.0 - (time.monotonic() - sent)))
        print(f"pytest and the mesh gone {time.monotonic() - sent:.2f} s after SIGINT")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(pids) >= 6
    assert survivors == []  # the budget: every process gone within 2 s of Ctrl-C
    assert proc.returncode == pytest.ExitCode.INTERRUPTED


def test_a_pytest_timeout_stops_the_run_and_leaves_no_processes(
    project: pytest.Pytester,
) -> None:
    proc, pids, _ = _run_interrupted(project, ["--timeout", "4"], None, after=0)
    try:
        output = proc.communicate(timeout=30)[0].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Timeout" in output
    assert wait_gone(pids, timeout=3.0) == []


def test_each_xdist_worker_gets_its_own_mesh(project: pytest.Pytester) -> None:
    project.makepyfile("""
        import os
        import pytest

        @pytest.mark.parametrize("n", [1, 2, 3, 4])
        @pytest.mark.aiperf(request_count=4)
        def test_on_some_worker(n, aiperf_result, aiperf_mesh):
            assert aiperf_result.request_count == 4
            print("MESH", os.environ.get("PYTEST_XDIST_WORKER"), aiperf_mesh.service_config.run_dir)
    """)
    result = project.runpytest_subprocess("-n", "2", "-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
