"""The progress bar of ``aiperf profile`` on a terminal."""

from __future__ import annotations

import io

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
