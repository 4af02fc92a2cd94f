"""The live progress line in a real terminal: pytest runs in a pseudo-terminal (so its
output is a TTY), a load test runs for a few seconds against the built-in mock, and what
the terminal received is replayed: the line was drawn after pytest's text, and wiped
before the outcome, so the screen ends as pytest alone would leave it. With -q nothing."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.unit.pytest_aiperf.test_live_progress import screen

LONG_TEST = """
import pytest

@pytest.mark.aiperf(streaming=True, concurrency=2, benchmark_duration=4.5, osl=8,
                    slo={"request_error_rate": "<= 50 %"})
def test_long(aiperf_result):
    pass
"""
COLUMNS = 120


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120.0) -> tuple[int, str]:
    """pytest with a pseudo-terminal as stdin, stdout and stderr: its exit code and every
    byte it wrote to the terminal."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    env = {**os.environ, "COLUMNS": str(COLUMNS), "TERM": "xterm"}
    env.pop("PY_COLORS", None)
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                *args], cwd=cwd, stdin=terminal, stdout=terminal,
                               stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # EIO: every writer has closed the terminal
                    break
                if not data:
                    break
                out += data
            elif process.poll() is not None:
                break
        else:
            process.kill()
        code = process.wait(timeout=30)
    finally:
        os.close(controller)
    return code, out.decode("utf-8", "replace").replace("\r\n", "\n")


def test_a_long_load_test_shows_its_progress_in_place_then_v_its_histogram(
    project: pytest.Pytester,
) -> None:
    # Also: a session that asks for no report imports nothing of aiperf.report.
    project.makeconftest("""
        import sys
        from pathlib import Path

        def pytest_unconfigure(config):
            loaded = sorted(m for m in sys.modules if m.startswith("aiperf.report")
                            or m == "pytest_aiperf.html")
            Path("modules.txt").write_text(repr(loaded))
    """)
    project.makepyfile(LONG_TEST)
    code, raw = run_in_terminal(["-v"], project.path)
    assert code == 0, raw
    # The line, fitted to what pytest's text leaves: "NN%" first, whatever else fits.
    draws = [part for part in raw.split("\r") if re.search(r"\x1b\[36m\d+%", part)]
    assert draws, raw  # drawn at least once (from 2 s into the run)
    # after pytest's "test_x.py::test_long " on the same line: moved there, no new line
    assert all(part.startswith("\x1b[") and "\n" not in part for part in draws), draws
    lines, _ = screen(raw)
    shown = "\n".join(lines)  # nothing of the line is left on screen
    assert "requests" not in shown and "s p99 lat" not in shown
    at = next(i for i, line in enumerate(lines) if "::test_long" in line)
    # the test's line is pytest's alone, then -v's histogram with the verdicts
    assert re.fullmatch(r"test_\w+\.py::test_long PASSED +\[100%\]", lines[at].rstrip())
    assert re.fullmatch(r"    Request Latency  [\d.]+ ms [▁▂▃▄▅▆▇█ ]{24} [\d.,]+ ms  "
                        r"\(n=\d+, p50 [\d.]+, p99 [\d.,]+\)  verdicts: 1 PASS",
                        lines[at + 1]), lines[at + 1]
    assert (project.path / "modules.txt").read_text() == "[]"


def test_with_q_there_is_no_progress(project: pytest.Pytester) -> None:
    project.makepyfile(LONG_TEST)
    code, raw = run_in_terminal(["-q"], project.path)
    assert code == 0, raw
    assert "requests, 0 errors" not in raw and "\x1b[K" not in raw
