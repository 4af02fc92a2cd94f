"""AIPerf's usage_* metrics on real runs against a reference server that reports usage no
client could compute: 123 prompt tokens, 45 completion tokens and a total of 170 (not their
sum, 168), for 8 answer tokens. The metrics must be the server's numbers as sent, in the
result, the three artifacts and objectives; a server that sends no usage gives no usage
metric (absent, never 0)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from aiperf.exporters.base import export_files
from aiperf.mesh import Mesh
from aiperf.results import ProfileResult
from tests.harness.reference_servers import Behaviour
from tests.truth.conftest import ServerPool

PROMPT, COMPLETION, TOTAL = 123, 45, 170
REPORTING = Behaviour(answer_tokens=8, usage_numbers=(PROMPT, COMPLETION, TOTAL))
SILENT = Behaviour(answer_tokens=8, usage=False)
REQUESTS = 6
USAGE = ("usage_prompt_tokens", "usage_completion_tokens", "usage_total_tokens",
         "usage_reasoning_tokens")
# The totals' truth: every request reports the same numbers (the reference server reports
# 0 reasoning tokens, as a server without reasoning does).
TRUTH = {"usage_prompt_tokens": PROMPT, "usage_completion_tokens": COMPLETION,
         "usage_total_tokens": TOTAL, "usage_reasoning_tokens": 0}
REPO_ROOT = Path(__file__).resolve().parents[2]


def run(mesh: Mesh, url: str, endpoint: str, streaming: bool) -> ProfileResult:
    return mesh.run(url=url, model="ref", endpoint_type=endpoint, streaming=streaming,
                    concurrency=2, request_count=REQUESTS, request_timeout_seconds=20)


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "body"])
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_the_usage_metrics_are_the_servers_numbers_as_sent(
        truth_mesh: Mesh, reference_servers: ServerPool, tmp_path: Path, endpoint: str,
        streaming: bool) -> None:
    result = run(truth_mesh, reference_servers.get(REPORTING).url, endpoint, streaming)
    assert result.error_count == 0 and result.request_count == REQUESTS
    truth = TRUTH
    rows = [r["metrics"] for r in result.records
            if r["metadata"]["benchmark_phase"] == "profiling"]
    assert len(rows) == REQUESTS
    for row in rows:
        assert {tag: row[tag]["value"] for tag in truth} == truth
        assert all(row[tag]["unit"] == "tokens" for tag in truth)
        # OSL takes the server's completion count too; the usage metric is not OSL's copy
        # by accident: the tokenizer's count (8) is what it would be otherwise.
        assert row["output_sequence_length"]["value"] == COMPLETION
    for tag, value in truth.items():
        stats = result.metrics[tag].stats
        assert (stats["avg"], stats["min"], stats["max"], stats["count"]) == \
            (value, value, value, REQUESTS), tag
        assert result.metrics[f"total_{tag}"].stats == {"avg": value * REQUESTS}, tag

    paths = export_files(result, tmp_path)
    exported = json.loads(paths["json"].read_text())
    for tag, value in truth.items():
        assert exported[tag]["avg"] == value and exported[tag]["unit"] == "tokens"
        assert exported[f"total_{tag}"]["avg"] == value * REQUESTS
    with paths["csv"].open(newline="") as handle:
        cells = {row[0]: row[1] for row in csv.reader(handle) if len(row) > 1}
    assert cells["Usage Completion Tokens (tokens)"] == f"{COMPLETION:.2f}"
    assert cells["Usage Prompt Tokens (tokens)"] == f"{PROMPT:.2f}"
    assert cells["Total Usage Completion Tokens (tokens)"] == f"{COMPLETION * REQUESTS:.2f}"
    lines = [json.loads(line) for line in paths["jsonl"].read_text().splitlines()]
    profiling = [line for line in lines if line["metadata"]["benchmark_phase"] == "profiling"]
    assert len(profiling) == REQUESTS
    assert all(line["metrics"]["usage_completion_tokens"]["value"] == COMPLETION
               for line in profiling)


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "body"])
def test_no_usage_sent_means_no_usage_metric(
        truth_mesh: Mesh, reference_servers: ServerPool, tmp_path: Path,
        streaming: bool) -> None:
    result = run(truth_mesh, reference_servers.get(SILENT).url, "chat", streaming)
    assert result.error_count == 0 and result.request_count == REQUESTS
    for record in result.records:
        assert not set(USAGE) & set(record["metrics"])
    for tag in USAGE:
        assert tag not in result.metrics and f"total_{tag}" not in result.metrics
    # The tokenizer still counts OSL (8 one-word tokens): only the usage metrics are absent.
    assert result.metrics["output_sequence_length"].stats["avg"] == 8
    exported = json.loads(export_files(result, tmp_path)["json"].read_text())
    assert not {key for key in exported if "usage_" in key}


OBJECTIVES = '''
import pytest


@pytest.mark.aiperf(url="{url}", model="ref", endpoint="chat", streaming=True,
                    concurrency=2, request_count=16, request_timeout_seconds=20, slo={{
    "usage_completion_tokens.p50": "<= {completion}",
    "total_usage_completion_tokens": ">= {total}",
}})
def test_meets():
    pass


@pytest.mark.aiperf(url="{url}", model="ref", endpoint="chat", streaming=True,
                    concurrency=2, request_count=16, request_timeout_seconds=20, slo={{
    "usage_completion_tokens.p50": ">= {more}",
}})
def test_breaches():
    pass
'''


def test_an_objective_on_usage_completion_tokens_is_judged_on_the_servers_count(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        reference_servers: ServerPool) -> None:
    url = reference_servers.get(REPORTING).url
    pytester.makeini("[pytest]\naiperf_validity = warn\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_usage=OBJECTIVES.format(
        url=url, completion=COMPLETION, total=COMPLETION * 16, more=COMPLETION + 1))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p))
    result = pytester.runpytest_subprocess("-p", "no:randomly", timeout=100)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_breaches*", "*usage_completion_tokens*"])
