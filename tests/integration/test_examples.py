"""Every example in conftest_examples/ runs as a user would run it, and its outcome holds."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aiperf.mock_server import MockServerProcess

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "conftest_examples"


def run_example(name: str, *args: str, env: dict[str, str] | None = None,
                cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(EXAMPLES / name), "-p", "no:cacheprovider",
         "-rA", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def test_local_mock_passes_and_shows_the_deliberate_breach() -> None:
    proc = run_example("local_mock")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "5 passed, 1 xfailed" in proc.stdout
    assert "aiperf load tests" in proc.stdout
    assert "FAIL test_a_breach_looks_like_this: time_to_first_token.p50" in proc.stdout
    assert "INCONCLUSIVE" not in proc.stdout  # each example's request count decides it


def test_remote_endpoint_skips_cleanly_without_its_environment() -> None:
    env = {k: "" for k in ("LLM_URL", "LLM_MODEL", "LLM_API_KEY")}
    proc = run_example("remote_endpoint", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "4 skipped" in proc.stdout
    assert "set LLM_URL and LLM_MODEL" in proc.stdout


def test_remote_endpoint_runs_against_the_endpoint_it_is_given() -> None:
    with MockServerProcess(ttft_ms=5, itl_ms=1) as server:
        proc = run_example("remote_endpoint", env={"LLM_URL": server.url,
                                                   "LLM_MODEL": "remote-model",
                                                   "LLM_API_KEY": "sk-example-key"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "4 passed" in proc.stdout
    assert "sk-example-key" not in proc.stdout + proc.stderr


def test_ci_gating_writes_junit_and_the_step_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    proc = run_example("ci_gating", env={"GITHUB_STEP_SUMMARY": str(summary)}, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    junit = ET.parse(tmp_path / "aiperf-artifacts" / "junit.xml")
    names = {p.get("name") for p in junit.iter("property")}
    assert "aiperf.slo.good_request_fraction" in names
    assert "✅ PASS" in summary.read_text()
    assert "| request_error_rate | 0.00 % | no interval |" in summary.read_text()
    assert "INCONCLUSIVE" not in proc.stdout
    assert (tmp_path / "aiperf-artifacts" / "summary.json").is_file()


def test_ci_gating_fails_the_job_on_a_breach(tmp_path: Path) -> None:
    with MockServerProcess(ttft_ms=150, itl_ms=1) as slow:
        proc = run_example("ci_gating", "--aiperf-url", slow.url, cwd=tmp_path)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED
    assert "time_to_first_token.p95" in proc.stdout and "FAIL" in proc.stdout


def test_plugin_author_example_passes_the_full_contract() -> None:
    proc = run_example("plugin_author")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "12 passed, 1 skipped" in proc.stdout
    assert "PASSED conftest_examples/plugin_author/test_rankings_contract.py::" \
           "TestRankingsContract::test_a_profile_through_the_mesh_yields_every_promised_metric" \
           in proc.stdout


def test_the_example_package_registers_through_the_entry_point(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(EXAMPLES / "plugin_author")], check=True, timeout=300)
    proc = subprocess.run([sys.executable, "-m", "aiperf", "plugins"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(target)})
    assert proc.returncode == 0, proc.stderr
    assert "example_rankings" in proc.stdout and "Hugging Face TEI /rerank" in proc.stdout


def test_real_engine_runs_against_llama_server_or_skips_with_the_reason() -> None:
    from pytest_aiperf.kit.servers import why_unavailable

    proc = run_example("real_engine")
    assert proc.returncode == 0, proc.stdout[-3000:]
    if why_unavailable() is None:
        assert "2 passed" in proc.stdout
    else:
        assert "2 skipped" in proc.stdout and str(why_unavailable()) in proc.stdout


def test_soak_runs_short() -> None:
    proc = run_example("soak", env={"SOAK_DURATION": "20s"})
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "1 passed" in proc.stdout and "time_to_first_token.p99@10s" in proc.stdout
    assert "INCONCLUSIVE" not in proc.stdout
