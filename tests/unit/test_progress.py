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


def _slice_tick() -> RunProgress:
    # The audit's run: --benchmark-duration 4 --slice-duration 2, two seconds in.
    return RunProgress(run_id="r", records=80, errors=0, elapsed_s=2.0, slice_start_s=2.0,
                       slice_end_s=4.0, slice_requests=80,
                       slice_p99_ms={"request_latency": 245.3, "time_to_first_token": 31.24})


def _drawn(monkeypatch: pytest.MonkeyPatch, columns: int, progress: RunProgress) -> str:
    import os
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size",
                        lambda fallback=(80, 24): os.terminal_size((columns, 24)))
    out = io.StringIO()
    ProgressLine(UserConfig(benchmark_duration=4), out)(progress)
    drawn = out.getvalue()
    assert drawn.startswith("\r") and len(drawn) == columns  # "\r" + columns - 1: no wrap
    return drawn[1:].rstrip()


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_the_slices_p99_survives_a_narrow_terminal(monkeypatch: pytest.MonkeyPatch,
                                                   columns: int) -> None:
    shown = _drawn(monkeypatch, columns, _slice_tick())
    assert len(shown) < columns
    assert "p99" in shown and "245 ms" in shown and "TTFT 31.2 ms" in shown
    if columns == 200:  # room for everything: the whole line, bar first
        assert shown == ProgressLine(UserConfig(benchmark_duration=4)).render(_slice_tick())
        assert shown.startswith("[############............]  50%  80 requests, 0 errors")
    else:  # the bar goes first, then the long words, never the slice
        assert "#" not in shown and shown.startswith("50%")
    if columns == 80:
        assert shown == "50% 80 req, 0 err, ~2 s left | 2-4s p99 lat 245 ms, TTFT 31.2 ms"
    if columns == 60:
        assert shown == "50% | 2-4s p99 lat 245 ms, TTFT 31.2 ms"


def test_errors_outlast_the_counts_and_a_line_that_cannot_fit_is_cut_with_an_ellipsis(
        ) -> None:
    line = ProgressLine(UserConfig(request_count=100_000))
    progress = RunProgress(run_id="r", records=45_000, errors=1234, elapsed_s=2000.0,
                           slice_start_s=1990.0, slice_end_s=2000.0, slice_requests=80,
                           slice_p99_ms={"request_latency": 1245.3})
    assert line.render(progress, 60) == "45%, 1234 err | 1990-2000s p99 lat 1245 ms"
    cut = line.render(progress, 30)
    assert len(cut) == 30 and cut.endswith("…") and cut.startswith("45%, 1234 err")
    # Too narrow for both p99s: request latency's whole rather than TTFT's cut short.
    narrow = ProgressLine(UserConfig(benchmark_duration=4)).render(_slice_tick(), 30)
    assert narrow == "50% | 2-4s p99 lat 245 ms"
    for width in range(1, 160):  # never past the width, whatever it is
        assert len(line.render(progress, width)) <= width


def test_a_drawn_line_never_runs_past_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = _drawn(monkeypatch, 60, RunProgress(
        run_id="r", records=5000, errors=0, elapsed_s=3.0, slice_start_s=0.0,
        slice_end_s=10.0, slice_requests=800, slice_p99_ms={"request_latency": 12.345}))
    assert "lat 12.3 ms" in shown
