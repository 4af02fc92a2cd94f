"""The records manager's live slice (the progress line's p99): the latencies of the
successful profiling records that arrived in the current slice, the last full one while
a new slice is still empty."""

from __future__ import annotations

import numpy as np
import pytest

from aiperf.common.codec import PROFILING, WARMUP, ErrorInfo, MetricRecord
from aiperf.services.records_manager import LiveSlice

MS = 1_000_000


def record(latency_ms: float, ttft_ms: float = -1, phase: int = PROFILING,
           failed: bool = False) -> MetricRecord:
    latency, ttft = round(latency_ms * MS), round(ttft_ms * MS) if ttft_ms >= 0 else -1
    return MetricRecord(1, phase, "w", 0, 0, 0, latency, ttft, -1, latency, 10, 16, [],
                        error=ErrorInfo(500, "X", "boom") if failed else None)


def test_each_slice_reports_its_own_p99_and_an_empty_new_one_shows_the_last() -> None:
    live = LiveSlice(10.0, started=100.0)
    assert live.progress_fields(100.5) == {}  # nothing yet
    rng = np.random.default_rng(3)
    first = rng.lognormal(2, 0.5, 500)
    live.add([record(v, v / 4) for v in first], now=103.0)
    live.add([record(1e6, phase=WARMUP), record(1e6, failed=True)], now=104.0)
    fields = live.progress_fields(105.0)
    assert fields["slice_start_s"] == 0.0 and fields["slice_end_s"] == 10.0
    assert fields["slice_requests"] == 500
    assert fields["slice_p99_ms"]["request_latency"] == pytest.approx(
        np.percentile(np.round(first * MS) / MS, 99))
    assert fields["slice_p99_ms"]["time_to_first_token"] == pytest.approx(
        np.percentile(np.round(first / 4 * MS) / MS, 99))
    assert live.progress_fields(112.0) == fields  # slice 2 begun, still empty
    second = rng.lognormal(4, 0.5, 300)
    live.add([record(v) for v in second], now=113.0)
    fields = live.progress_fields(114.0)
    assert (fields["slice_start_s"], fields["slice_requests"]) == (10.0, 300)
    assert set(fields["slice_p99_ms"]) == {"request_latency"}  # not streamed: no TTFT
    assert fields["slice_p99_ms"]["request_latency"] == pytest.approx(
        np.percentile(np.round(second * MS) / MS, 99))
