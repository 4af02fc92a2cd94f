"""profile_export.jsonl has one reader: a comparison (load_source) and a timeline
(load_requests) read the same requests from it, and the timeline keeps arrays, not a
Python object per request (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiperf.baselines.sources as sources
from aiperf.baselines.sources import (
    RECORDS_FILE,
    SUMMARY_FILE,
    RequestErrors,
    RequestIds,
    SourceError,
    load_requests,
    load_source,
)
from tests.harness.memory import traced

SUMMARY = {"schema_version": "1.4", "aiperf_version": "0.13.0"}

_records = st.lists(st.fixed_dictionaries({
    "phase": st.sampled_from(["profiling", "profiling", "warmup"]),
    "start": st.integers(1, 10**12),
    "took": st.integers(0, 10**9),
    "latency": st.none() | st.floats(0, 1e6, allow_nan=False),
    "error": st.none() | st.sampled_from([
        {"code": 500, "type": "Internal Server Error", "message": "boom"},
        {"type": "TimeoutError"}, "a bare string"]),
    "unsent": st.booleans(),
}), max_size=40)


def _line(i: int, r: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {"benchmark_phase": r["phase"], "credit_id": i,
                            "credit_issued_ns": r["start"] - 5,
                            "request_start_ns": 0 if r["error"] and r["unsent"] else r["start"],
                            "request_end_ns": r["start"] + r["took"]}
    out: dict[str, Any] = {"metadata": meta, "metrics": {}}
    if r["latency"] is not None:
        out["metrics"]["request_latency"] = {"value": r["latency"], "unit": "ms"}
    if r["error"] is not None:
        out["error"] = r["error"]
    return out


def _write(directory: Path, records: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SUMMARY_FILE).write_text(json.dumps(SUMMARY))
    (directory / RECORDS_FILE).write_text(
        "".join(json.dumps(_line(i, r)) + "\n" for i, r in enumerate(records)))
    return directory


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_records, chunk=st.sampled_from([64, 1 << 18]))
def test_a_comparison_and_a_timeline_read_the_same_requests(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        records: list[dict[str, Any]], chunk: int) -> None:
    monkeypatch.setattr(sources, "_CHUNK_BYTES", chunk)  # chunk edges inside the file
    directory = _write(tmp_path_factory.mktemp("run"), records)
    run = load_source(directory, ["request_latency"])
    rows = load_requests(directory, ["request_latency"])
    profiling = [(i, r) for i, r in enumerate(records) if r["phase"] == "profiling"]
    assert len(rows) == len(profiling) and run.error_count == int((~rows.ok).sum())
    assert list(rows.ids) == [str(i) for i, _ in profiling]
    latency = rows.values["request_latency"]
    compared = run.metric_values("request_latency")
    assert (compared.tolist() if compared is not None else []) == latency[
        np.isfinite(latency)].tolist()
    ends = run.end_times()
    timeline_ends = rows.end_s[rows.ok & np.isfinite(rows.end_s)]
    if ends is None:
        assert not len(timeline_ends) or not np.isfinite(rows.start_s).any()
    else:
        assert ends == pytest.approx(timeline_ends, abs=1e-9)
    for position, (_, r) in enumerate(profiling):
        error = rows.errors[position]
        assert (error is None) == (r["error"] is None)
        if isinstance(r["error"], str):
            assert error == ("error", "a bare string")


def test_the_timeline_keeps_arrays_not_an_object_per_request(tmp_path: Path) -> None:
    n = 20_000
    record = {"error": None, "phase": "profiling", "start": 10**9, "took": 5_000,
              "latency": 12.5, "unsent": False}
    failed = dict(record, error={"code": 500, "type": "Internal Server Error",
                                 "message": "boom"})
    directory = _write(tmp_path / "d", [failed if i % 10 == 0 else record for i in range(n)])
    rows, kept, peak = traced(lambda: load_requests(directory, ["request_latency"]))
    assert isinstance(rows.ids, RequestIds) and isinstance(rows.errors, RequestErrors)
    assert rows.ids[5] == "5" and rows.errors[10] == ("500 Internal Server Error", "boom")
    assert rows.errors[1:3] == [None, None] and rows.ids[:2] == ["0", "1"]
    assert int((~rows.ok).sum()) == n // 10
    # start, end and latency 8 bytes each, the error's index 4, the id's bytes (at most 5
    # here): 33 bytes a request; a str and a tuple each would be over 100.
    assert kept < 40 * n + 100_000, kept
    # the chunks' lines and records on top, bounded by the chunk and not by the file
    assert peak < kept * 3 + 4_000_000, peak


def test_a_bad_line_is_named_by_either_reader(tmp_path: Path) -> None:
    directory = _write(tmp_path / "d", [{"phase": "profiling", "start": 1, "took": 1,
                                         "latency": 1.0, "error": None, "unsent": False}])
    with (directory / RECORDS_FILE).open("a") as handle:
        handle.write('{"metadata": [1]}\n')
    for read in (lambda: load_source(directory), lambda: load_requests(directory, [])):
        with pytest.raises(SourceError, match=rf"{RECORDS_FILE}:2: not a per-request record"):
            read()
