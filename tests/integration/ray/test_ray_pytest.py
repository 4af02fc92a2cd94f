"""The Ray backend from the user's side: a pytest session with ``--aiperf-ray-address``
and ``aiperf profile --ray-address``, each run inside the cluster's namespace."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from tests.harness.ray_cluster import RayCluster
from tests.integration.ray.drivers import MOCK, Driver

# The generated tests check from the inside that their load came from Ray actors: only
# remote workers have clock offsets.
LOAD_TESTS = textwrap.dedent("""
    import pytest

    @pytest.mark.aiperf(request_count=40, concurrency=4, streaming=True,
                        slo={"request_latency.p50": "< 60 s"})
    def test_reachable(aiperf_result):
        assert aiperf_result.request_count == 40
        assert aiperf_result.error_count == 0
        assert aiperf_result.invariant["ok"]
        assert sorted(aiperf_result.clock_offsets) == ["worker_0", "worker_1"]
        workers = {r["metadata"]["worker_id"] for r in aiperf_result.records}
        assert workers == {"worker_0", "worker_1"}
        print("RAY-WORKERS", sorted(workers))

    @pytest.mark.aiperf(request_count=40, concurrency=4, streaming=True,
                        slo={"request_latency.p50": "< 1 ns"})
    def test_impossible(aiperf_result):
        pass
""")


def test_a_pytest_session_runs_its_load_tests_on_the_cluster(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    test_file = tmp_path / "test_generated_load.py"
    test_file.write_text(LOAD_TESTS)
    done = ray_cluster.run(
        [sys.executable, "-m", "pytest", str(test_file), "-s", "--rootdir", str(tmp_path),
         "--aiperf-ray-address", ray_cluster.address, "--aiperf-workers", "2",
         "-p", "no:cacheprovider", "-o", "aiperf_validity=warn"],
        timeout=180, cwd=tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output  # one test failed, nothing else went wrong
    assert f"on the Ray cluster at {ray_cluster.address}" in done.stdout, output
    assert "1 failed, 1 passed" in done.stdout, output
    assert "RAY-WORKERS ['worker_0', 'worker_1']" in done.stdout, output
    assert "FAIL test_impossible: request_latency.p50" in done.stdout, output


def test_the_cli_profiles_on_the_cluster_and_writes_exact_artifacts(
    ray_cluster: RayCluster, tmp_path: Path
) -> None:
    out = tmp_path / "artifacts"
    requests = 60
    driver = Driver(ray_cluster, "cli", address=ray_cluster.address, requests=requests,
                    out=str(out))
    try:
        cli = driver.expect("cli", 150)
    finally:
        driver.finish()
    assert cli["returncode"] == 0, cli["stdout"] + cli["stderr"]
    assert f"{requests} of {requests} requests succeeded, 0 failed." in cli["stdout"], cli
    summary = json.loads((out / "profile_export_aiperf.json").read_text())
    assert summary["request_count"]["avg"] == requests
    assert summary.get("error_request_count", {}).get("avg", 0) == 0
    # --workers-per-node 1 on two nodes: two remote workers, both with a clock estimate.
    assert sorted(summary["clock_offsets"]) == ["worker_0", "worker_1"], summary
    lines = (out / "profile_export.jsonl").read_text().splitlines()
    assert len(lines) == requests
    records = [json.loads(line) for line in lines]
    assert {r["metadata"]["worker_id"] for r in records} == {"worker_0", "worker_1"}
    assert len({r["metadata"]["credit_id"] for r in records}) == requests
    assert all(r["metrics"]["output_sequence_length"]["value"] == MOCK["tokens"]
               for r in records)
