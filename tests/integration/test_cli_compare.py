"""``aiperf compare`` and ``aiperf history`` from the shell, on real runs of the mock server,
the committed NVIDIA AIPerf 0.13 directory and a storage written by ``Storage``."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from aiperf.baselines.storage import Storage, node_slug
from aiperf.mock_server import MockServerProcess
from tests.harness.synthetic_runs import synthetic_result

AIPERF013 = Path(__file__).parents[1] / "data" / "aiperf013"
EXIT_REGRESSED = 6
EXIT_CONFIG = 2
GATE = "time_to_first_token.p50:10%"


def aiperf(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiperf", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@dataclass(frozen=True)
class Runs:
    base: Path  # the mock at TTFT 20 ms
    same: Path  # the same mock again
    slow: Path  # a mock at TTFT 40 ms: twice the baseline's TTFT


def _profile(url: str, out: Path) -> Path:
    proc = aiperf("profile", "-u", url, "-m", "m", "--streaming", "--concurrency", "4",
                  "--request-count", "120", "--osl", "8", "--output-artifact-dir", out)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("runs")
    # TTFT well above the client's own jitter (a loaded 2-core box adds a millisecond or
    # two), so that the same mock measures the same p50 within a few percent.
    with MockServerProcess(ttft_ms=20.0, itl_ms=1.0, tokens=8) as fast:
        base = _profile(fast.url, root / "base")
        same = _profile(fast.url, root / "same")
    with MockServerProcess(ttft_ms=40.0, itl_ms=1.0, tokens=8) as slow_server:
        slow = _profile(slow_server.url, root / "slow")
    return Runs(base, same, slow)


def _table(stdout: str, key: str) -> list[str]:
    """The rows of the table of ``key`` (``metric.stat``), without its header."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ("))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip() or line.strip().startswith(("method", "gate", "margin")):
            break
        rows.append(line)
    return rows


def test_the_same_server_twice_passes_the_gate(runs: Runs) -> None:
    proc = aiperf("compare", runs.base, runs.same, "--fail", GATE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"baseline: {runs.base} (pytest-aiperf artifacts: 120 requests, 0 errors)" \
        in proc.stdout
    [row] = _table(proc.stdout, "time_to_first_token.p50")
    assert str(runs.same) in row and "REGRESSED" not in row
    assert f"gate --fail {GATE}" in proc.stdout
    # The defaults are shown too, each with its method once under its table.
    for key in ("time_to_first_token.p99", "inter_token_latency.p50", "request_latency.p50",
                "request_throughput"):
        assert len(_table(proc.stdout, key)) == 1, key
    assert "method: exact bootstrap" in proc.stdout
    assert "warning" not in proc.stdout  # one profile, one machine


def test_a_server_twice_as_slow_regresses_with_exit_6_and_its_interval(runs: Runs) -> None:
    proc = aiperf("compare", runs.base, runs.slow, "--fail", GATE, "--confidence", "0.99")
    assert proc.returncode == EXIT_REGRESSED, proc.stdout + proc.stderr
    [row] = _table(proc.stdout, "time_to_first_token.p50")
    cells = row.split()
    assert cells[-1] == "REGRESSED"
    before, after = float(cells[1]), float(cells[2])
    assert after == pytest.approx(2 * before, rel=0.25)
    # the interval, in % for a relative rule, lies wholly above the 10 % margin
    low = float(row.split("..")[0].split()[-2])
    assert low > 10.0
    assert "99 % interval" in proc.stdout
    assert f"REGRESSED: {GATE} ({runs.slow})" in proc.stdout


def test_several_runs_share_one_table_per_metric(runs: Runs) -> None:
    proc = aiperf("compare", runs.base, runs.same, runs.slow, "--metric",
                  "time_to_first_token.p50", "--metric", "request_latency")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # no --fail: no gate
    rows = _table(proc.stdout, "time_to_first_token.p50")
    assert [r.split()[0] for r in rows] == [str(runs.same), str(runs.slow)]
    assert rows[1].split()[-1] == "REGRESSED"
    assert _table(proc.stdout, "request_latency.p99")
    assert "inter_token_latency" not in proc.stdout  # --metric replaced the defaults


def test_the_committed_aiperf_directory_against_one_of_ours(runs: Runs) -> None:
    proc = aiperf("compare", AIPERF013, runs.base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"baseline: {AIPERF013} (NVIDIA AIPerf artifacts 0.13.0: 30 requests, 2 errors)" \
        in proc.stdout
    # Another profile (AIPerf asked for 32 prompts of 32 tokens): compared, keys named.
    warning = next(line for line in proc.stdout.splitlines() if line.startswith("warning:"))
    assert "isl (32 -> 128)" in warning and "request_count (32 -> 120)" in warning
    assert "mapped from NVIDIA AIPerf's input_config" in proc.stdout
    [row] = _table(proc.stdout, "time_to_first_token.p50")
    assert row.split()[-1] in ("REGRESSED", "IMPROVED", "UNCHANGED", "INCONCLUSIVE")
    [row] = _table(proc.stdout, "request_throughput")
    assert str(runs.base) in row


def test_a_gate_on_a_metric_neither_run_measured_is_warned_about(runs: Runs) -> None:
    proc = aiperf("compare", runs.base, runs.same, "--fail", "reasoning_token_count.p50:5%")
    assert proc.returncode == 0, proc.stdout + proc.stderr  # nothing regressed...
    [row] = _table(proc.stdout, "reasoning_token_count.p50")
    assert row.split()[-1] == "INCONCLUSIVE"
    # ...but a gate that checked nothing is said to have checked nothing
    assert "warning: --fail reasoning_token_count.p50:5%" in proc.stdout
    assert "was not measured in the before and after run" in proc.stdout


@pytest.mark.parametrize("bad", ["missing", "no_source_dir", "a_file"])
def test_a_bad_source_exits_2_naming_it(runs: Runs, tmp_path: Path, bad: str) -> None:
    path = tmp_path / bad
    if bad == "no_source_dir":
        path.mkdir()
        (path / "notes.txt").write_text("not a run")
    elif bad == "a_file":
        path.write_text("{}")
    proc = aiperf("compare", runs.base, path)
    assert proc.returncode == EXIT_CONFIG
    assert str(path) in proc.stderr and proc.stdout == ""


def test_a_bad_rule_one_source_or_a_bad_confidence_exit_2(runs: Runs) -> None:
    proc = aiperf("compare", runs.base, runs.same, "--fail", "time_to_first_token.p50:10")
    assert proc.returncode == EXIT_CONFIG and "has no unit" in proc.stderr
    proc = aiperf("compare", runs.base)
    assert proc.returncode == EXIT_CONFIG and "at least two sources" in proc.stderr
    proc = aiperf("compare", runs.base, runs.same, "--confidence", "1.5")
    assert proc.returncode == EXIT_CONFIG and "--confidence" in proc.stderr


# -- history


CHAT = "tests/test_serving.py::test_chat[8]"
EMBED = "tests/test_serving.py::test_embeddings"


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store") / ".aiperf"
    store = Storage(root)
    store.save(CHAT, synthetic_result(300, seed=1, ttft_ms=40.0), "main")
    store.save(CHAT, synthetic_result(300, seed=2, ttft_ms=60.0))
    store.save(CHAT, synthetic_result(300, seed=3, ttft_ms=60.0, slots=8))
    store.save(EMBED, synthetic_result(100, seed=4))
    return root


def test_history_lists_the_stored_tests_and_their_run_counts(storage: Path) -> None:
    proc = aiperf("history", "--storage", storage)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[-1]: line.split()[0] for line in proc.stdout.splitlines()[2:]}
    assert rows == {CHAT: "3", EMBED: "1"}


def test_history_of_a_test_shows_its_runs_oldest_first_with_trends(storage: Path) -> None:
    proc = aiperf("history", "chat", "--storage", storage)  # a unique part of the node id
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{CHAT}: 3 stored runs, oldest first")
    header = lines[1].split()
    assert header[:5] == ["#", "name", "saved", "(UTC)", "commit"]
    assert "TTFT" in header and "trend" in header
    first, second, third = (line.split() for line in lines[2:5])
    assert (first[0], first[1], second[0], second[1], third[0]) == ("1", "main", "2", "auto",
                                                                    "3")
    # TTFT p99 rose with the slower synthetic server: a positive trend on run 2, none on 1.
    ttft_1, ttft_2 = float(first[5]), float(second[5])
    assert ttft_2 > ttft_1 and second[6].startswith("+") and second[7] == "%"
    # the trend is of the stored values, the columns are rounded: within a rounding
    assert float(second[6]) == pytest.approx((ttft_2 - ttft_1) / ttft_1 * 100, abs=0.2)
    assert "#3: profile changed since #2 (concurrency" in proc.stdout


def test_history_takes_the_node_id_or_its_slug(storage: Path) -> None:
    by_id = aiperf("history", CHAT, "--storage", storage)
    by_slug = aiperf("history", node_slug(CHAT), "--storage", storage)
    assert by_id.returncode == by_slug.returncode == 0
    assert by_id.stdout == by_slug.stdout


def test_history_of_an_unknown_or_ambiguous_test_exits_2(storage: Path, tmp_path: Path) -> None:
    proc = aiperf("history", "test_", "--storage", storage)
    assert proc.returncode == EXIT_CONFIG and "matches 2 stored tests" in proc.stderr
    proc = aiperf("history", "nothing_like_it", "--storage", storage)
    assert proc.returncode == EXIT_CONFIG and CHAT in proc.stderr
    proc = aiperf("history", "--storage", tmp_path / "nowhere")
    assert proc.returncode == EXIT_CONFIG and "no storage directory" in proc.stderr


def test_two_stored_runs_compare_and_name_their_profile_change(storage: Path) -> None:
    directory = storage / node_slug(CHAT)
    first, _, third = sorted(directory.glob("*.json"))
    proc = aiperf("compare", first, third, "--fail", "time_to_first_token.p50:10%")
    assert proc.returncode == EXIT_REGRESSED, proc.stdout + proc.stderr
    assert f"stored run of {CHAT} (#1 main)" in proc.stdout
    assert "concurrency (4 -> 8)" in proc.stdout
