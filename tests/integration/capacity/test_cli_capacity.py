"""``aiperf capacity`` (the subcommand ``aiperf.capacity.cli.register`` adds), run in
process against the mock's capacity model: 2 slots, TTFT 150 ms, one token."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiperf.capacity.cli import EXIT_CONFIG, EXIT_OK, register
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from tests.integration.capacity._calibrate import require_quiet_machine


def capacity(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aiperf")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["capacity", *argv])
    return int(args.func(args))


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    server = MockServerProcess(ttft_ms=150, tokens=1, slots=2)
    yield server.start()
    server.stop()


def test_the_command_finds_the_capacity_and_writes_capacity_json(
    mock_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    with Mesh(workers=1) as mesh:
        require_quiet_machine(mesh, mock_url, 2, 150.0, 185.0, requests=20)
    code = capacity(["-u", mock_url, "-m", "m", "--streaming", "--osl", "1",
                     "--slo", "time_to_first_token.p90<185ms", "--slo", "request_error_rate<=5%",
                     "--over", "concurrency", "--min", "2", "--max", "3",
                     "--request-count", "60", "--max-requests", "1500", "--validity", "off",
                     "--workers-max", "1", "--output-artifact-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert "capacity 2 concurrent (fails at 3)" in out
    assert "SLO attainment" in out and "at 3 concurrent: FAIL" in out
    data = json.loads((tmp_path / "capacity.json").read_text())
    assert (data["over"], data["max_passing"], data["min_failing"]) == ("concurrency", 2, 3)
    assert [p["point"] for p in data["probes"]] == [2, 3]
    assert all(p["objectives"] and p["requests"] >= 60 for p in data["probes"])
    assert data["requests"] <= 1500
    assert "latency-load curve" in out
    curve = data["curve"]
    assert [row["point"] for row in curve] == [2, 3]
    assert curve[1]["time_to_first_token.p99"] > curve[0]["time_to_first_token.p50"]
    assert (tmp_path / "probe01_concurrency_2" / "profile_export_aiperf.json").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--slo", "ttft<250ms"], "unknown metric 'ttft'"),
    (["--slo", "time_to_first_token.p99 fast"], "is not METRIC"),
    (["--slo", "request_latency.p90<1s", "--concurrency", "4"], "--concurrency is what"),
    (["--slo", "request_latency.p90<1s", "--confidence", "2"], "confidence"),
])
def test_bad_input_is_a_configuration_error_before_any_load(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert capacity(["-u", "http://127.0.0.1:9", *argv]) == EXIT_CONFIG
    assert message in capsys.readouterr().err


def test_the_model_is_waited_for_once_before_the_first_probe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # nothing listens on port 9: the wait gives up after its timeout, before any mesh
    code = capacity(["-u", "http://127.0.0.1:9", "-m", "m", "--slo", "request_latency.p90<1s",
                     "--wait-for-model-timeout", "1"])
    assert code == 1
    assert "did not answer within --wait-for-model-timeout 1 s" in capsys.readouterr().err
