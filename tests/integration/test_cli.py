"""``aiperf`` from the shell: exit codes, messages and artifact shapes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from aiperf.mock_server import MockServerProcess


def aiperf(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiperf", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_profile_prints_the_table_and_writes_aiperf_shaped_artifacts(
    mock_server: MockServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "art"
    proc = aiperf("profile", "-u", mock_server.url, "-m", "m", "--streaming",
                  "--concurrency", "4", "--request-count", "30", "--osl", "6",
                  "--api-key", "sk-very-secret", "--output-artifact-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Time to First Token (ms)" in proc.stdout
    assert "30 of 30 requests succeeded, 0 failed." in proc.stdout
    summary = json.loads((out / "profile_export_aiperf.json").read_text())
    ttft = summary["time_to_first_token"]
    assert ttft["unit"] == "ms"
    assert set(ttft) >= {"avg", "min", "max", "std", "p1", "p50", "p99", "count", "sum"}
    assert summary["request_count"] == {"unit": "requests", "avg": 30}
    assert summary["input_config"]["api_key"] == "***"
    assert {"error_summary", "was_cancelled", "start_time", "end_time"} <= set(summary)
    rows = list(csv.reader((out / "profile_export_aiperf.csv").open()))
    assert rows[0][:4] == ["Metric", "avg", "min", "max"] and rows[0][-1] == "std"
    assert ["Metric", "Value"] in rows
    lines = (out / "profile_export.jsonl").read_text().splitlines()
    assert len(lines) == 30
    first = json.loads(lines[0])
    assert first["metadata"]["benchmark_phase"] == "profiling"
    assert first["metrics"]["output_sequence_length"] == {"value": 6, "unit": "tokens"}
    for path in out.iterdir():
        assert "sk-very-secret" not in path.read_text()
    assert "sk-very-secret" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "0"], "--concurrency: Input should be greater than or equal to 1"),
    (["--endpoint-type", "chatt"], "--endpoint-type: Value error, unknown endpoint 'chatt'"),
    (["--arrival-pattern", "burst"], "--arrival-pattern: Input should be 'constant'"),
    (["--goodput", "ttft:100"], "unknown goodput metric 'ttft'"),
])  # fmt: skip
def test_invalid_configuration_exits_2_naming_the_flag(args: list[str], message: str) -> None:
    proc = aiperf("profile", "-u", "http://127.0.0.1:9", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_every_request_failing_exits_3_and_says_why(tmp_path: Path) -> None:
    proc = aiperf("profile", "-u", "http://127.0.0.1:9", "--request-count", "4",
                  "--output-artifact-dir", str(tmp_path))
    assert proc.returncode == 3
    assert "0 of 4 requests succeeded, 4 failed." in proc.stdout
    assert "ClientConnectorError" in proc.stdout


def test_failed_request_threshold_exits_4(tmp_path: Path) -> None:
    with MockServerProcess(error_rate=0.5, seed=4) as server:
        proc = aiperf("profile", "-u", server.url, "--request-count", "40", "--concurrency", "4",
                      "--failed-request-threshold", "10", "--output-artifact-dir", str(tmp_path))
    assert proc.returncode == 4
    assert "more than --failed-request-threshold 10.0%" in proc.stderr


def test_plugins_lists_categories_with_descriptions() -> None:
    proc = aiperf("plugins")
    assert proc.returncode == 0
    assert "endpoint:" in proc.stdout and "OpenAI Chat Completions" in proc.stdout


def test_mesh_command_starts_lists_and_stops() -> None:
    proc = aiperf("mesh")
    assert proc.returncode == 0
    assert "worker_0" in proc.stdout and "no-op run" in proc.stdout


def test_rate_mode_reports_achieved_rate_and_schedule_lag(
    mock_server: MockServerProcess, tmp_path: Path
) -> None:
    proc = aiperf("profile", "-u", mock_server.url, "--request-rate", "40",
                  "--arrival-pattern", "constant", "--request-count", "20",
                  "--output-artifact-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "requests/s of 40 scheduled; schedule lag (credit to start) p50" in proc.stdout
