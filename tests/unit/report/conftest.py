"""Artifact directories for the report's tests, written by the engine's own exporters from
synthetic runs (``tests.harness.synthetic_runs``: known lognormal records, some failed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aiperf.exporters.base import export_files
from aiperf.results import ProfileResult
from tests.harness.synthetic_runs import synthetic_result


def verdict(objective: str, threshold: str, measured: float, interval: list[float] | None,
            status: str = "PASS", window: str = "whole run", unit: str = "ms") -> dict[str, Any]:
    """One objective as summary.json writes it (``Verdict.to_dict``)."""
    return {"objective": objective, "threshold": threshold, "measured": measured,
            "unit": unit, "verdict": status, "interval": interval, "confidence": 0.95,
            "n": 100, "method": "order statistics (binomial, distribution-free)",
            "note": None, "window": window, "needed": None, "measured_requests": 100,
            "sent_requests": 100, "implicit": False}


def session_root(root: Path, tests: dict[str, tuple[ProfileResult, list[dict[str, Any]],
                                                     str]]) -> Path:
    """A pytest artifacts root as ``--aiperf-artifacts`` leaves it: a directory per test
    (the exporters' files) and summary.json naming them, with their verdicts and outcomes.
    ``tests``: node id -> (result, verdicts, outcome)."""
    entries = []
    for nodeid, (result, verdicts, outcome) in tests.items():
        directory = root / nodeid.replace("::", "_").replace("[", "_").strip("]")
        export_files(result, directory)
        entries.append({"nodeid": nodeid, "run": 1, "profile": "chat stream c=4",
                        "outcome": outcome, "error": None, "warnings": [],
                        "requests_sent": result.request_count + result.error_count,
                        "metrics": {"request_throughput": result.metric("request_throughput")},
                        "objectives": verdicts, "artifacts": str(directory), "invalid": None,
                        "looks": 1, "validity": None, "baseline": None, "comparisons": [],
                        "saved": None})
    (root / "summary.json").write_text(json.dumps({"load_tests": entries}))
    return root


@pytest.fixture(scope="module")
def run_200() -> ProfileResult:
    return synthetic_result(200, error_share=0.05, seed=3)


@pytest.fixture
def artifact_dir(tmp_path: Path, run_200: ProfileResult) -> Path:
    export_files(run_200, tmp_path / "run")
    return tmp_path / "run"
