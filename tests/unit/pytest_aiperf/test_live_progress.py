"""The live progress line in pytest's terminal: drawn after pytest's own text on the line,
redrawn in place, and wiped back to exactly that text, on pytest's real TerminalWriter
over a fake TTY (progress messages carry their elapsed time: no clock is read)."""

from __future__ import annotations

import io
import re

import pytest
from _pytest._io import TerminalWriter

from aiperf.common.config import UserConfig
from aiperf.common.messages import RunProgress
from pytest_aiperf.progress import MIN_ROOM, SHOW_AFTER_S, LiveProgress, fit

_CSI = re.compile(r"\x1b\[(\d*)([A-Za-z])")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(raw: str) -> tuple[list[str], int]:
    """What a VT100 shows for ``raw``: its lines, and the cursor's column on the last one.
    Understands text, \\r, \\n, cursor forward (CSI n C), erase to the end (CSI K) and
    ignores colours (CSI ... m)."""
    lines: list[list[str]] = [[]]
    col = 0
    i = 0
    while i < len(raw):
        match = _CSI.match(raw, i)
        if match:
            count, code = int(match.group(1) or 1), match.group(2)
            if code == "C":
                col += count
            elif code == "K":
                del lines[-1][col:]
            i = match.end()
            continue
        char = raw[i]
        if char == "\r":
            col = 0
        elif char == "\n":
            lines.append([])
            col = 0
        else:
            line = lines[-1]
            line.extend(" " * (col - len(line) + 1) if col >= len(line) else "")
            line[col] = char
            col += 1
        i += 1
    return ["".join(line) for line in lines], col


def _writer(width: int = 100) -> tuple[TerminalWriter, FakeTTY]:
    out = FakeTTY()
    writer = TerminalWriter(out)
    writer.hasmarkup = True  # a colour terminal: the line is drawn in cyan
    writer.fullwidth = width
    return writer, out


def _progress(records: int, elapsed: float, errors: int = 0) -> RunProgress:
    return RunProgress(run_id="r1", records=records, errors=errors, elapsed_s=elapsed)


def test_a_run_shorter_than_the_threshold_draws_nothing() -> None:
    writer, out = _writer()
    writer.write("test_x.py::test_a ")
    update = LiveProgress(writer).start(UserConfig(request_count=100))
    update(_progress(10, SHOW_AFTER_S - 0.5))
    assert out.getvalue() == "test_x.py::test_a "


def test_the_line_follows_pytests_text_and_is_wiped_back_to_it() -> None:
    writer, out = _writer()
    prefix = "test_x.py::test_a "
    writer.write(prefix)
    live = LiveProgress(writer)
    update = live.start(UserConfig(request_count=100))
    update(_progress(40, 2.0, errors=3))
    lines, col = screen(out.getvalue())
    assert lines == [prefix + " [##########..............]  40%  40/100 requests, "
                     "3 errors, 2 s, ~3 s left"]
    update(_progress(80, 4.0))  # redrawn in place: still one line
    lines, col = screen(out.getvalue())
    assert lines == [prefix + " [###################.....]  80%  80/100 requests, "
                     "0 errors, 4 s, ~1 s left"]
    live.clear()
    lines, col = screen(out.getvalue())
    assert lines == [prefix] and col == len(prefix)
    # pytest's own count of the line is untouched, so its outcome and [ 50%] land right
    assert writer.width_of_current_line == len(prefix)
    writer.write("PASSED")
    assert screen(out.getvalue())[0] == [prefix + "PASSED"]
    live.clear()  # a second wipe writes nothing
    assert screen(out.getvalue())[0] == [prefix + "PASSED"]


def test_at_the_start_of_a_line_no_cursor_move_is_written() -> None:
    writer, out = _writer()
    live = LiveProgress(writer)
    live.start(UserConfig(benchmark_duration=10))(_progress(5, 2.5))
    assert out.getvalue().startswith("\r\x1b[36m[")  # no "\x1b[0C": that moves one column
    live.clear()
    assert screen(out.getvalue()) == ([""], 0)


def test_a_narrow_terminal_drops_the_bar_then_the_line() -> None:
    prefix = "test_x.py::test_a "
    config = UserConfig(request_count=100)
    writer, out = _writer(width=len(prefix) + 50)
    writer.write(prefix)
    LiveProgress(writer).start(config)(_progress(40, 2.0))
    shown = screen(out.getvalue())[0][0]
    assert shown.startswith(prefix + " 40%  40/100 requests") and "#" not in shown
    assert len(shown) < writer.fullwidth  # never wraps: a wrapped line cannot be redrawn
    writer, out = _writer(width=len(prefix) + MIN_ROOM)
    writer.write(prefix)
    LiveProgress(writer).start(config)(_progress(40, 2.0))
    assert out.getvalue() == prefix


def test_after_a_test_name_the_slices_p99_survives_an_80_column_terminal() -> None:
    prefix = "test_x.py::test_a "
    writer, out = _writer(width=80)
    writer.write(prefix)
    LiveProgress(writer).start(UserConfig(benchmark_duration=60))(RunProgress(
        run_id="r1", records=4000, errors=2, elapsed_s=33.0, slice_start_s=30.0,
        slice_end_s=40.0, slice_requests=800,
        slice_p99_ms={"request_latency": 812.4, "time_to_first_token": 95.1}))
    shown = screen(out.getvalue())[0][0]
    assert shown.startswith(prefix) and len(shown) < writer.fullwidth
    assert shown.endswith("p99 lat 812 ms, TTFT 95.1 ms") and "#" not in shown


def test_when_pytest_wrote_meanwhile_the_wipe_leaves_its_line_alone() -> None:
    writer, out = _writer()
    writer.write("test_x.py::test_a ")
    live = LiveProgress(writer)
    live.start(UserConfig(request_count=100))(_progress(40, 2.0))
    writer.line()
    writer.write("INFO live log line")  # e.g. log_cli, which starts a line of its own
    live.clear()
    assert screen(out.getvalue())[0][-1] == "INFO live log line"


def test_capture_is_suspended_around_each_write() -> None:
    writer, out = _writer()
    events: list[str] = []

    class Suspend:
        def __enter__(self) -> None:
            events.append(f"off at {len(out.getvalue())}")

        def __exit__(self, *exc: object) -> None:
            events.append(f"on at {len(out.getvalue())}")

    live = LiveProgress(writer, Suspend)
    live.start(UserConfig(request_count=100))(_progress(40, 2.0))
    drawn = len(out.getvalue())
    live.clear()
    assert events == ["off at 0", f"on at {drawn}", f"off at {drawn}",
                      f"on at {len(out.getvalue())}"]


@pytest.mark.parametrize(("text", "room", "expected"), [
    ("[####....]  40%  4/10 requests", 40, "[####....]  40%  4/10 requests"),
    ("[####....]  40%  4/10 requests", 25, "40%  4/10 requests"),
    ("[####....]  40%  4/10 requests, 0 errors", 20, "40%  4/10 requests,…"),
    ("[####....]  40%  4/10 requests", MIN_ROOM - 1, ""),
])
def test_fit(text: str, room: int, expected: str) -> None:
    assert fit(text, room) == expected


class _Plugins:
    def __init__(self, reporter: object) -> None:
        self.reporter = reporter

    def get_plugin(self, name: str) -> object | None:
        return self.reporter if name == "terminalreporter" else None


class _Config:
    """What ``_for_terminal`` reads of a pytest.Config."""

    def __init__(self, reporter: object) -> None:
        self.pluginmanager = _Plugins(reporter)

    def get_verbosity(self) -> int:
        return 0

    def get_terminal_writer(self) -> TerminalWriter:
        return _writer()[0]


class _Reporter:
    def __init__(self, isatty: object) -> None:
        self.isatty = isatty


@pytest.mark.parametrize(("isatty", "shown"), [
    (True, True), (False, False),  # pytest 8: TerminalReporter.isatty is a bool
    (lambda: True, True), (lambda: False, False),  # pytest 9: callable
])
def test_the_terminal_is_asked_whether_it_is_a_tty_as_any_pytest_answers(
        isatty: object, shown: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aiperf.progress import _for_terminal

    monkeypatch.setenv("TERM", "xterm")
    live = _for_terminal(_Config(_Reporter(isatty)))  # type: ignore[arg-type]
    assert (live is not None) == shown
