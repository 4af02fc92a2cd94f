"""``aiperf`` from the shell: exit codes, messages and artifact shapes."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    (["--goodput", "ttft:100"], "goodput metric 'ttft' is not a metric"),
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


class _KeyCheckingHandler(BaseHTTPRequestHandler):
    """A chat endpoint that answers only the Bearer token ``expected``."""

    expected = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.headers.get("Authorization") == f"Bearer {self.expected}"
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                 "content": "hi there"},
                                        "finish_reason": "stop"}]} if ok
                          else {"error": "bad key"}).encode()
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@contextlib.contextmanager
def key_checking_server(expected: str) -> Iterator[str]:
    handler = type("Handler", (_KeyCheckingHandler,), {"expected": expected})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("variable", ["AIPERF_API_KEY", "OPENAI_API_KEY"])
def test_the_api_key_comes_from_the_environment_and_is_never_shown(
    variable: str, tmp_path: Path
) -> None:
    secret = "sk-from-the-environment-42"
    env = {k: v for k, v in os.environ.items() if k not in {"AIPERF_API_KEY", "OPENAI_API_KEY"}}
    with key_checking_server(secret) as url:
        proc = subprocess.run(
            [sys.executable, "-m", "aiperf", "profile", "-u", url, "--request-count", "3",
             "--output-artifact-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=120, env={**env, variable: secret})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "3 of 3 requests succeeded" in proc.stdout
        assert secret not in proc.stdout + proc.stderr
        for path in tmp_path.iterdir():
            assert secret not in path.read_text()
        without = subprocess.run(
            [sys.executable, "-m", "aiperf", "profile", "-u", url, "--request-count", "2",
             "--output-artifact-dir", str(tmp_path / "without")],
            capture_output=True, text=True, timeout=120, env=env)
    assert without.returncode == 3  # the server refused every request: no key was sent


def test_ctrl_c_writes_the_partial_results_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "art"
    with MockServerProcess(ttft_ms=40, itl_ms=10, tokens=10) as server:
        cli = subprocess.Popen(
            [sys.executable, "-m", "aiperf", "profile", "-u", server.url, "--streaming",
             "--concurrency", "4", "--request-count", "100000", "--osl", "4", "--log-level", "INFO",
             "--output-artifact-dir", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own group, as a shell gives a foreground job
        lines: list[str] = []
        ready = threading.Event()

        def read_stderr() -> None:
            assert cli.stderr is not None
            for line in cli.stderr:
                lines.append(line)
                if "mesh ready" in line:
                    ready.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        try:
            assert ready.wait(60), "".join(lines)
            time.sleep(1.5)  # requests complete
            assert cli.poll() is None, "".join(lines)
            os.killpg(cli.pid, signal.SIGINT)  # what Ctrl-C at a terminal sends
            cli.wait(60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait(5)
            reader.join(5)
    stderr = "".join(lines)
    assert cli.returncode == 130, stderr
    assert "interrupted; partial results written" in stderr
    assert "unaccounted" not in stderr
    summary = json.loads((out / "profile_export_aiperf.json").read_text())
    assert summary["was_cancelled"] is True
    lines = (out / "profile_export.jsonl").read_text().splitlines()
    completed = summary["request_count"]["avg"]
    assert 10 <= completed < 100000
    records = [json.loads(line) for line in lines]
    ids = [r["metadata"]["credit_id"] for r in records]
    assert len(set(ids)) == len(ids)  # one record per issued credit, none twice
    errors = [r for r in records if "error" in r]
    assert len(records) == completed + len(errors)
    # What was in flight at Ctrl-C is a cancellation error, not a success or a loss.
    assert all(r["error"]["type"] == "RequestCancellationError" for r in errors)
    assert len(errors) <= 4


def test_a_bad_dataset_line_exits_2_naming_file_line_and_field(tmp_path: Path) -> None:
    data = tmp_path / "trace.jsonl"
    data.write_text('{"timestamp": 0, "input_length": 4}\n'
                    '{"timestamp": 5, "input_length": 4, "output_length": "12"}\n')
    proc = aiperf("profile", "-u", "http://127.0.0.1:9", "--input-file", str(data),
                  "--custom-dataset-type", "mooncake_trace", "--fixed-schedule",
                  "--output-artifact-dir", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert f"{data}:2: field 'output_length' must be an integer ('12')" in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before the run started


def test_durations_take_units_on_the_command_line(
    mock_server: MockServerProcess, tmp_path: Path
) -> None:
    proc = aiperf("profile", "-u", mock_server.url, "--benchmark-duration", "800ms",
                  "--benchmark-grace-period", "2s", "--output-artifact-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "profile_export_aiperf.json").read_text())
    assert summary["input_config"]["benchmark_duration"] == 0.8
    bad = aiperf("profile", "-u", mock_server.url, "--benchmark-duration", "0s")
    assert bad.returncode == 2
    assert "--benchmark-duration: Input should be greater than 0" in bad.stderr
