"""The progress bar of ``aiperf profile`` on a terminal."""

from __future__ import annotations

import io

import pytest

from aiperf.common.config import UserConfig
from aiperf.common.messages import RunProgress
from aiperf.progress import ProgressLine


def tick(records: int, elapsed_s: float, errors: int = 0) -> RunProgress:
    return RunProgress(run_id="r", records=records, errors=errors, elapsed_s=elapsed_s)


def test_a_count_run_shows_share_done_and_time_left_by_requests() -> None:
    line = ProgressLine(UserConfig(request_count=1000), io.StringIO())
    text = line.render(tick(250, 10.0, errors=3))
    assert text.startswith("[######..................]  25%")
    assert "250/1000 requests, 3 errors, 10 s, ~30 s left" in text


def test_a_duration_run_counts_by_the_clock_and_shows_no_total() -> None:
    line = ProgressLine(UserConfig(benchmark_duration=60), io.StringIO())
    text = line.render(tick(5000, 45.0))
    assert "75%" in text and "5000 requests" in text and "~15 s left" in text


def test_short_runs_draw_nothing_and_a_drawn_bar_ends_with_a_newline() -> None:
    out = io.StringIO()
    line = ProgressLine(UserConfig(request_count=10), out)
    line(tick(5, 0.5))
    line.close()
    assert out.getvalue() == ""
    line(tick(5, 3.0))
    line.close()
    assert out.getvalue().startswith("\r[") and out.getvalue().endswith("\n")


def test_the_current_slices_p99_follows_the_totals() -> None:
    line = ProgressLine(UserConfig(benchmark_duration=60), io.StringIO())
    progress = RunProgress(run_id="r", records=5000, errors=0, elapsed_s=33.0,
                           slice_start_s=30.0, slice_end_s=40.0, slice_requests=800,
                           slice_p99_ms={"request_latency": 12.345,
                                         "time_to_first_token": 3.21})
    text = line.render(progress)
    assert text.endswith("~27 s left | 30-40 s: p99 latency 12.3 ms, TTFT 3.21 ms")
    assert "|" not in line.render(tick(5000, 33.0))  # none sent: the totals alone


def test_a_drawn_line_never_runs_past_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((60, 24)))
    out = io.StringIO()
    line = ProgressLine(UserConfig(benchmark_duration=60), out)
    line(RunProgress(run_id="r", records=5000, errors=0, elapsed_s=33.0,
                     slice_start_s=30.0, slice_end_s=40.0, slice_requests=800,
                     slice_p99_ms={"request_latency": 12.345}))
    assert out.getvalue().startswith("\r[") and len(out.getvalue()) == 1 + 59
