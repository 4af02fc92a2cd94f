"""``load_source``: stored runs, this project's artifacts and NVIDIA AIPerf's, read alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiperf.baselines.compare import RunValues, compare, parse_rule
from aiperf.baselines.fingerprint import fingerprint
from aiperf.baselines.sources import (
    RECORDS_FILE,
    SUMMARY_FILE,
    LoadedRun,
    SourceError,
    load_source,
)
from aiperf.baselines.storage import Storage, stored_run
from aiperf.exporters.base import export_files
from tests.harness.memory import traced
from tests.harness.synthetic_runs import synthetic_result

AIPERF013 = Path(__file__).parents[2] / "data" / "aiperf013"


def _write_dir(directory: Path, summary: dict[str, Any] | None,
               records: list[dict[str, Any]] | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if summary is not None:
        (directory / SUMMARY_FILE).write_text(json.dumps(summary))
    if records is not None:
        (directory / RECORDS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def _record(start: int, end: int, metrics: dict[str, tuple[Any, str]], *,
            phase: str = "profiling", error: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {"benchmark_phase": phase, "request_start_ns": start,
                     "request_end_ns": end, "worker_id": "w"},
        "metrics": {tag: {"value": value, "unit": unit}
                    for tag, (value, unit) in metrics.items()},
    }
    if error is not None:
        out["error"] = error
    return out


NVIDIA_SUMMARY = {"schema_version": "1.4", "aiperf_version": "0.13.0",
                  "request_count": {"unit": "requests", "avg": 2.0}}


# -- NVIDIA AIPerf 0.13 (the committed, real artifact directory)


def test_the_committed_aiperf_directory_reads_with_aiperfs_own_statistics() -> None:
    run = load_source(AIPERF013)
    assert run.kind == "nvidia-aiperf" and run.tool_version == "0.13.0"
    assert (run.request_count, run.error_count) == (30, 2)
    summary = json.loads((AIPERF013 / SUMMARY_FILE).read_text())
    # The per-request values give back AIPerf's own percentiles: right records, right unit.
    for tag in ("time_to_first_token", "request_latency", "inter_token_latency",
                "output_sequence_length", "inter_chunk_latency"):
        values = run.metric_values(tag)
        assert values is not None and values.size == summary[tag]["count"], tag
        for stat in ("p50", "p99", "avg"):
            mine = np.mean(values) if stat == "avg" else np.percentile(values, int(stat[1:]))
            assert mine == pytest.approx(summary[tag][stat], rel=1e-9), (tag, stat)
    ends = run.end_times()
    assert ends is not None and ends.size == 30 and ends.min() > 0
    assert ends.max() == pytest.approx(summary["benchmark_duration"]["avg"], rel=1e-6)
    assert run.metric_values("no_such_metric") is None


def test_the_aiperf_profile_is_mapped_onto_ours_and_the_target_kept() -> None:
    run = load_source(AIPERF013)
    assert run.fingerprint is not None and run.fingerprint_note is not None
    keys = run.fingerprint.keys
    assert (keys["model"], keys["endpoint_type"], keys["streaming"]) == ("mock-model", "chat",
                                                                         True)
    assert (keys["concurrency"], keys["request_count"], keys["isl"], keys["osl"],
            keys["random_seed"]) == (4, 32, 32, 8, 4)
    assert run.target["model"] == "mock-model"
    assert run.target["url"] is not None and run.target["url"].startswith("http://127.0.0.1:")


def test_a_file_of_an_artifact_directory_stands_for_the_directory() -> None:
    run = load_source(AIPERF013 / RECORDS_FILE)
    assert run.kind == "nvidia-aiperf" and run.path == AIPERF013


def test_only_the_asked_metrics_are_kept_with_what_throughputs_need() -> None:
    run = load_source(AIPERF013, ["adj_request_latency", "total_token_throughput"])
    assert run.tags() == ["input_sequence_length", "output_sequence_length", "request_latency"]
    adjusted = run.metric_values("adj_request_latency")
    assert adjusted is not None and adjusted.size == 32 and np.isinf(adjusted).sum() == 2
    assert run.end_times() is not None


# -- this project's artifacts and stored runs: the same values either way


def test_our_artifacts_give_the_values_and_end_times_a_stored_run_keeps(tmp_path: Path) -> None:
    result = synthetic_result(200, seed=1)
    export_files(result, tmp_path / "art")
    run = load_source(tmp_path / "art")
    stored = stored_run("t.py::test", result, "auto", 1)
    assert run.kind == "artifacts" and run.tool_version is None
    assert (run.request_count, run.error_count) == (stored.request_count, stored.error_count)
    assert run.fingerprint == stored.fingerprint == fingerprint(result.config)
    for tag in ("time_to_first_token", "request_latency", "credit_to_start_latency",
                "output_sequence_length"):
        mine, kept = run.metric_values(tag), stored.metric_values(tag)
        assert mine is not None and kept is not None
        np.testing.assert_allclose(mine, np.asarray(result.metrics[tag].values))
        np.testing.assert_allclose(mine, kept, rtol=1e-6)  # float32 in the stored run
    mine_ends, kept_ends = run.end_times(), stored.end_times()
    assert mine_ends is not None and kept_ends is not None
    np.testing.assert_allclose(mine_ends, kept_ends, rtol=1e-6)
    adjusted = run.metric_values("adj_request_latency")
    np.testing.assert_allclose(adjusted, stored.metric_values("adj_request_latency"), rtol=1e-6)


def test_a_stored_run_file_is_a_source(tmp_path: Path) -> None:
    result = synthetic_result(100, seed=2)
    path = Storage(tmp_path / ".aiperf").save("t.py::test_one", result, "main")
    run = load_source(path)
    assert run.kind == "stored" and run.stored is not None
    assert run.machine is not None and run.fingerprint == fingerprint(result.config)
    assert "t.py::test_one" in run.title and "#1 main" in run.title
    values = run.metric_values("time_to_first_token")
    assert values is not None and values.size == run.stored.summary["time_to_first_token"]["count"]


def test_every_source_kind_is_a_runvalues_that_compare_accepts(tmp_path: Path) -> None:
    export_files(synthetic_result(200, seed=1), tmp_path / "art")
    ours: RunValues = load_source(tmp_path / "art")
    theirs: RunValues = load_source(AIPERF013)
    rules = [parse_rule("request_latency.p50:10%"), parse_rule("request_throughput:0%")]
    found = compare(ours, theirs, rules)
    assert [c.rule.text for c in found] == [r.text for r in rules]
    assert all("not compared" not in c.method for c in found[:1])


# -- shapes: units, phases, errors


def test_units_convert_to_ours_and_an_unconvertible_metric_is_left_out(tmp_path: Path) -> None:
    records = [
        _record(1_000, 3_001_000, {
            "request_latency": (0.003, "sec"),
            "time_to_first_token": (1_500_000, "ns"),
            "inter_chunk_latency": ([500.0, 1000.0], "us"),
            "output_token_throughput_per_user": (2.0, "tokens/ms/user"),
            "input_sequence_length": (12, "tokens"),
            "output_sequence_length": (3, "bytes"),  # not a token count: left out
            "weird": ("n/a", "ms"),  # not a number: skipped, not fatal
        }),
        _record(0, 900, {"request_latency": (9.0, "ms")}, phase="warmup"),
        _record(500, 500, {"credit_to_start_latency": (0.1, "ms")},
                error={"code": 500, "type": "Internal Server Error", "message": "x"}),
    ]
    run = load_source(_write_dir(tmp_path / "d", NVIDIA_SUMMARY, records))
    np.testing.assert_allclose(run.metric_values("request_latency"), [3.0])
    np.testing.assert_allclose(run.metric_values("time_to_first_token"), [1.5])
    np.testing.assert_allclose(run.metric_values("inter_chunk_latency"), [0.5, 1.0])
    np.testing.assert_allclose(run.metric_values("output_token_throughput_per_user"), [2000.0])
    np.testing.assert_allclose(run.metric_values("credit_to_start_latency"), [0.1])
    assert run.metric_values("output_sequence_length") is None
    assert any("output_sequence_length" in note and "'bytes'" in note for note in run.notes)
    # The warmup record starts first but is no part of the run; the failed one starts the
    # profiling phase, so the successful request's end counts from it.
    np.testing.assert_allclose(run.end_times(), [(3_001_000 - 500) / 1e9])


def test_a_directory_without_aiperf_version_is_ours(tmp_path: Path) -> None:
    summary = {"request_count": {"unit": "requests", "avg": 1},
               "input_config": {"url": "http://user:pw@127.0.0.1:9/", "model": "m",
                                "streaming": True, "concurrency": 2}}
    records = [_record(10, 20, {"request_latency": (1.0, "ms")})]
    run = load_source(_write_dir(tmp_path / "d", summary, records))
    assert run.kind == "artifacts" and run.fingerprint is not None
    assert run.fingerprint.keys["concurrency"] == 2
    assert "pw" not in str(run.target["url"])


def test_a_summary_whose_config_is_not_ours_leaves_the_profile_unknown(tmp_path: Path) -> None:
    summary = {"request_count": {"unit": "requests", "avg": 1},
               "input_config": {"no_such_key": 1}}
    run = load_source(_write_dir(tmp_path / "d", summary,
                                 [_record(10, 20, {"request_latency": (1.0, "ms")})]))
    assert run.fingerprint is None and run.fingerprint_note is not None


@pytest.mark.parametrize(("make", "says"), [
    (lambda d: d / "missing", "no such file or directory"),
    (lambda d: _write_dir(d / "empty", None, None),
     f"must hold {SUMMARY_FILE} and {RECORDS_FILE}"),
    (lambda d: _write_dir(d / "only_summary", NVIDIA_SUMMARY, None),
     "--export-level records"),
    (lambda d: _write_dir(d / "only_records", None, []), f"no {SUMMARY_FILE}"),
    (lambda d: _write_dir(d / "list", None, [])
     and (d / "list" / SUMMARY_FILE).write_text("[1, 2]") and d / "list",
     "not a profile summary"),
    (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt",
     "not a result source"),
])
def test_a_path_that_is_no_source_is_an_error_naming_it(tmp_path: Path, make: Any,
                                                         says: str) -> None:
    path = make(tmp_path)
    with pytest.raises(SourceError) as info:
        load_source(path)
    assert str(path) in str(info.value) and says in str(info.value)


def test_a_bad_record_line_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path / "d", NVIDIA_SUMMARY,
                           [_record(1, 2, {"request_latency": (1.0, "ms")})])
    with (directory / RECORDS_FILE).open("a") as handle:
        handle.write("\n{\"metadata\": [1, 2]}\n")
    with pytest.raises(SourceError, match=rf"{RECORDS_FILE}:3: not a per-request record"):
        load_source(directory)


def test_a_damaged_stored_run_is_an_error_naming_it(tmp_path: Path) -> None:
    path = Storage(tmp_path).save("t.py::test", synthetic_result(50, seed=1))
    data = json.loads(path.read_text())
    data["values"]["request_latency"]["data"] = "AAAA"
    path.write_text(json.dumps(data))
    with pytest.raises(SourceError, match="damaged stored run") as info:
        load_source(path)
    assert str(path) in str(info.value)


def test_the_records_stream_keeps_only_the_asked_values_in_memory(tmp_path: Path) -> None:
    # 20,000 records of ~1.5 KB (a 40-value chunk list, 20 metrics): about 30 MB as Python
    # objects, if the reader kept them. Asking for one metric must cost its 8 bytes a value.
    lines = 20_000
    record = _record(1_000, 2_000, {
        "time_to_first_token": (12.5, "ms"),
        "inter_chunk_latency": ([1.25] * 40, "ms"),
        **{f"http_req_{name}": (0.5, "ms") for name in (
            "blocked", "dns_lookup", "connecting", "sending", "waiting", "receiving",
            "duration", "total")},
        **{f"extra_{i}": (float(i), "ms") for i in range(10)},
    })
    text = json.dumps(record) + "\n"
    directory = _write_dir(tmp_path / "big", NVIDIA_SUMMARY, None)
    with (directory / RECORDS_FILE).open("w") as handle:
        for _ in range(lines):
            handle.write(text)
    run, _, peak = traced(lambda: load_source(directory, ["time_to_first_token"]))
    values = run.metric_values("time_to_first_token")
    assert values is not None and values.size == lines
    # Values and end times: 16 bytes a record, arrays grown by doubling: ~40 bytes a record
    # at worst, plus the decoder and a line buffer.
    assert peak < 60 * lines + 1_000_000, peak
    assert isinstance(run, LoadedRun)
