"""The truth through the shell: ``aiperf profile`` against every reference server, read back
from the artifacts a user would read (``profile_export_aiperf.json`` and
``profile_export.jsonl``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.harness.reference_servers import ReferenceServer
from tests.truth.cases import (
    CASES,
    CONCURRENCIES,
    LIGHT_REQUESTS,
    REQUEST_TIMEOUT_S,
    Case,
)
from tests.truth.compare import check_run
from tests.truth.conftest import ServerPool

# Start-up, a mesh, the run and the export: a run that takes longer is hung.
CLI_TIMEOUT_S = 60.0


def aiperf_profile(server: ReferenceServer, case: Case, concurrency: int, requests: int,
                   out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = ["profile", "-u", server.url, "-m", "ref", "--endpoint-type", case.endpoint,
            "--concurrency", str(concurrency), "--request-count", str(requests),
            "--request-timeout-seconds", str(REQUEST_TIMEOUT_S),
            "--output-artifact-dir", str(out), *extra]
    if case.streaming:
        args.append("--streaming")
    return subprocess.run([sys.executable, "-m", "aiperf", *args], capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)


def read_artifacts(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = json.loads((out / "profile_export_aiperf.json").read_text())
    lines = (out / "profile_export.jsonl").read_text().splitlines()
    return summary, [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize("concurrency", CONCURRENCIES, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_the_artifacts_match_the_truth(
    reference_servers: ServerPool, tmp_path: Path, case: Case, concurrency: int
) -> None:
    server = reference_servers.get(case.behaviour)
    requests = LIGHT_REQUESTS[concurrency]
    before = server.stats()
    proc = aiperf_profile(server, case, concurrency, requests, tmp_path)
    seen = server.stats() - before
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    summary, records = read_artifacts(tmp_path)
    problems = check_run(case, concurrency, requests, summary, records, seen)
    assert not problems, f"{case.name} at c={concurrency} ({case.about}):\n  " + "\n  ".join(
        problems)
