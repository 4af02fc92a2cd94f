"""Sketch mode's time slices on a real run: a mesh of real processes against the mock
server in its own process (seeded, 20 ms to the first token, 10 % of requests failed),
with the per-request table kept so each slice's exact percentiles can be recomputed."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aiperf.exporters.base import export_files
from aiperf.mesh import Mesh
from aiperf.metrics.stats import summarize
from aiperf.mock_server import MockServerConfig, MockServerProcess
from aiperf.results import ProfileResult

SENT = 160
SLICE_S = 0.2


@pytest.fixture(scope="module")
def sketched() -> Iterator[ProfileResult]:
    server_config = MockServerConfig(ttft_ms=20, ttft_stddev_ms=6, itl_ms=2, tokens=4,
                                     error_rate=0.1, seed=7)
    with MockServerProcess(server_config) as server, Mesh(workers=2,
                                                          command_timeout=30) as mesh:
        # 4 slots of ~26 ms requests: about 1 s, so several 0.2 s slices.
        yield mesh.run(url=server.url, streaming=True, concurrency=4, request_count=SENT,
                       osl=4, sketch=True, export_records=True, slice_duration=SLICE_S)


def _slices(result: ProfileResult, out: Path) -> dict:
    export_files(result, out)
    return json.loads((out / "profile_export_aiperf_timeslices.json").read_text())


def test_sketched_slices_count_every_request_once_and_say_how_they_were_made(
        sketched: ProfileResult, tmp_path: Path) -> None:
    assert sketched.invariant["ok"] and sketched.request_count + sketched.error_count == SENT
    assert sketched["request_latency"].sketch is not None  # really sketch mode
    document = _slices(sketched, tmp_path)
    rows = document["timeslices"]
    assert len(rows) >= 3
    assert sum(r["request_count"]["avg"] for r in rows) == sketched.request_count
    assert sum(r["error_request_count"]["avg"] for r in rows) == sketched.error_count
    starts = [r["start_ns"] for r in rows]
    assert starts == sorted(starts) and all(r["end_ns"] > r["start_ns"] for r in rows)
    assert all(r["end_ns"] - r["start_ns"] == round(SLICE_S * 1e9)
               for r in rows if r.get("is_complete", True))
    statistics = document["statistics"]
    assert statistics["method"] == "sketch"
    assert sketched.config is not None
    assert statistics["relative_accuracy"] == sketched.config.sketch_relative_accuracy
    # What the windows do not keep is named, never silently missing.
    assert "output_sequence_length" in statistics["omitted_metrics"]
    assert all("output_sequence_length" not in r for r in rows)
    # A sketched metric has exactly the statistics exact mode writes.
    assert set(rows[0]["request_latency"]) == set(summarize(np.ones(2), "ms"))
    with (tmp_path / "profile_export_aiperf_timeslices.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert {r["Timeslice"] for r in table} == {str(i) for i in range(len(rows))}


def test_each_slices_percentiles_are_within_the_sketch_accuracy_of_its_own_records(
        sketched: ProfileResult, tmp_path: Path) -> None:
    rows = _slices(sketched, tmp_path)["timeslices"]
    assert sketched.config is not None
    alpha = sketched.config.sketch_relative_accuracy
    records = list(sketched.records)
    assert len(records) == SENT
    starts = np.array([r["metadata"]["request_start_ns"] for r in records])
    ok = np.array(["error" not in r or r["error"] is None for r in records])
    compared = 0
    for i, row in enumerate(rows):
        last = i == len(rows) - 1
        inside = (starts >= row["start_ns"]) & ((starts < row["end_ns"]) | last)
        assert int((inside & ok).sum()) == row["request_count"]["avg"], i
        for tag in ("request_latency", "time_to_first_token"):
            exact = np.array([records[k]["metrics"][tag]["value"]
                              for k in np.flatnonzero(inside & ok)])
            if not exact.size:  # a slice of failures only: no latency, as exact mode
                assert tag not in row
                continue
            assert row[tag]["count"] == exact.size
            for stat in ("p50", "p99"):
                truth = float(np.percentile(exact, float(stat[1:])))
                # The sketch's guarantee (aiperf/statistics/sketch.py), plus float rounding.
                assert abs(row[tag][stat] - truth) <= alpha * abs(truth) + 1e-9, (i, tag, stat)
                compared += 1
            assert row[tag]["max"] == pytest.approx(exact.max())  # exact, not sketched
    assert compared >= 12
