"""Live progress of a load test in pytest's terminal.

A run longer than ``SHOW_AFTER_S`` gets one line, redrawn in place as the mesh reports
(about once a second): ``aiperf.progress.ProgressLine``'s text, drawn right after what pytest
has already written on the current line (the test's name with ``-v``, its file's result
letters without), and wiped before pytest writes the test's outcome, so the line pytest
left is exactly the line it finds again.

The line is drawn with ``write_raw``: pytest's writer keeps counting the width of its own
text on the line, which places its ``[ 50%]`` column, and the cursor is moved past that text
with ANSI sequences instead of rewriting it (rewriting would drop its colours). Nothing is
drawn when the terminal is not a TTY (or is ``TERM=dumb``), with ``-q``, or on a
pytest-xdist worker (whose output is not a terminal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from aiperf.common.config import UserConfig
    from aiperf.common.messages import RunProgress

SHOW_AFTER_S = 2.0  # shorter runs finish before a line is worth drawing
MIN_ROOM = 16  # fewer free columns than this after pytest's text: nothing is drawn
ERASE_TO_END = "\x1b[K"
_BAR = re.compile(r"^\[[^\]]*\]\s*")  # ProgressLine's leading [####....] bar
_LIVE_KEY = pytest.StashKey["LiveProgress"]()


class Writer(Protocol):
    """The part of pytest's ``TerminalWriter`` the line uses."""

    @property
    def fullwidth(self) -> int: ...

    @property
    def width_of_current_line(self) -> int: ...

    def write_raw(self, msg: str, *, flush: bool = False) -> None: ...

    def markup(self, text: str, **markup: bool) -> str: ...


def fit(text: str, room: int) -> str:
    """``text`` in at most ``room`` columns: whole, else without its bar, else cut with an
    ellipsis; empty when fewer than ``MIN_ROOM`` columns are left (the line would wrap, and
    a wrapped line cannot be redrawn in place)."""
    if room < MIN_ROOM:
        return ""
    if len(text) <= room:
        return text
    text = _BAR.sub("", text)
    return text if len(text) <= room else text[:room - 1] + "…"


def _to_column(column: int) -> str:
    # "\x1b[0C" moves one column on some terminals: no move is written for column 0.
    return "\r" + (f"\x1b[{column}C" if column else "")


class LiveProgress:
    """The progress line of one test (every run of it: ``repeat``, ``extend``, and each
    ``aiperf.run`` in its body). ``suspend`` makes a context in which output capture is
    off, since the runs happen while pytest captures the test's output."""

    def __init__(self, writer: Writer,
                 suspend: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        self.writer = writer
        self.suspend = suspend
        self.column: int | None = None  # where the drawn line starts; None: none drawn

    def start(self, config: UserConfig) -> Callable[[RunProgress], None]:
        """The callback of one run (``Mesh.run(progress=...)``)."""
        from aiperf.progress import ProgressLine

        line = ProgressLine(config)  # only its render(): the writer draws

        def update(progress: RunProgress) -> None:
            if progress.elapsed_s >= SHOW_AFTER_S:
                # Fitted by the line itself, which knows what to shorten before the
                # slice's p99 is cut off.
                self.draw(lambda room: line.render(progress, room))

        return update

    def draw(self, text: str | Callable[[int], str]) -> None:
        """Draw ``text``, or what ``text(room)`` makes for the columns left, fitted."""
        column = self.writer.width_of_current_line
        if self.column is not None and column != self.column:
            self.column = None  # pytest wrote meanwhile (live logs): a fresh line is ours
        gap = " " if column else ""
        room = self.writer.fullwidth - column - len(gap) - 1
        text = fit(text if isinstance(text, str) else text(room), room)
        if not text:
            return
        with self.suspend():
            self.writer.write_raw(_to_column(column) + gap
                                  + self.writer.markup(text, cyan=True) + ERASE_TO_END,
                                  flush=True)
        self.column = column

    def clear(self) -> None:
        """Wipe the drawn line back to pytest's text, the cursor right after it."""
        if self.column is None:
            return
        if self.writer.width_of_current_line == self.column:  # else pytest moved on
            with self.suspend():
                self.writer.write_raw(_to_column(self.column) + ERASE_TO_END, flush=True)
        self.column = None


def _is_tty(reporter: Any) -> bool:
    # pytest 8's TerminalReporter.isatty is a bool, pytest 9's a callable bool
    isatty = reporter.isatty
    return bool(isatty() if callable(isatty) else isatty)


def _for_terminal(config: pytest.Config) -> LiveProgress | None:
    if hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not _is_tty(reporter) or os.environ.get("TERM") == "dumb":
        return None
    capture = config.pluginmanager.get_plugin("capturemanager")
    suspend = capture.global_and_fixture_disabled if capture is not None else nullcontext
    return LiveProgress(config.get_terminal_writer(), suspend)


def live_progress(item: pytest.Item,
                  config: UserConfig) -> Callable[[RunProgress], None] | None:
    """The progress callback of one run of ``item``'s profile, or None when the terminal
    shows no progress."""
    live = item.stash.get(_LIVE_KEY, None)
    if live is None:
        live = _for_terminal(item.config)
        if live is None:
            return None
        item.stash[_LIVE_KEY] = live
    return live.start(config)


def clear_progress(item: pytest.Item) -> None:
    """Before pytest reports a phase of ``item``: wipe its progress line, if drawn."""
    live = item.stash.get(_LIVE_KEY, None)
    if live is not None:
        live.clear()
