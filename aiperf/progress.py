"""The one-line progress display of a run on a terminal, drawn from the mesh's
``RunProgress`` messages (about one a second)."""

from __future__ import annotations

import shutil
import sys
from typing import Any, TextIO

ELLIPSIS = "…"  # where a line too long for the terminal is cut


class ProgressLine:
    """A bar on a terminal, redrawn as the run goes: share done, requests, errors, time, the
    time left (by requests for a count, by the clock for a duration), and the current time
    slice's p99 latency and TTFT (``RunProgress.slice_p99_ms``)."""

    WIDTH = 24

    def __init__(self, config: Any, stream: TextIO | None = None) -> None:
        self.total = (config.resolved_request_count() or 0) + config.warmup_request_count
        self.duration = config.benchmark_duration
        self.stream = stream or sys.stderr
        self.drawn = False

    def render(self, progress: Any, width: int | None = None) -> str:
        """The line, in at most ``width`` columns when given: whole; else without its bar;
        else in short words without the elapsed time; else without the counts too, then
        with the slice's first p99 only (the slice's p99 is what a narrow line keeps
        longest: it is the only figure not also in the final table); else cut with an
        ellipsis."""
        elapsed = progress.elapsed_s
        if self.duration:
            share = min(1.0, elapsed / self.duration)
            left = max(0.0, self.duration - elapsed)
        elif self.total:
            share = min(1.0, progress.records / self.total)
            left = elapsed * (1 - share) / share if share else float("nan")
        else:
            share, left = 0.0, float("nan")
        filled = round(share * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        of = f"/{self.total}" if self.total and not self.duration else ""
        eta = f", ~{left:.0f} s left" if left == left else ""  # NaN: unknown
        body = (f"{progress.records}{of} requests, {progress.errors} errors, "
                f"{elapsed:.0f} s{eta}{self._slice(progress)}")
        whole = f"[{bar}] {share:4.0%}  {body}"
        unbarred = f"{share:.0%}  {body}"
        if width is None or len(whole) <= width:
            return whole
        if len(unbarred) <= width:
            return unbarred
        sliced = self._slice(progress, short=True)
        short = f"{share:.0%} {progress.records}{of} req, {progress.errors} err{eta}{sliced}"
        if len(short) <= width:
            return short
        errors = f", {progress.errors} err" if progress.errors else ""
        shorter = f"{share:.0%}{errors}{sliced}"  # the counts are in the final table
        if len(shorter) <= width:
            return shorter
        # The slice's first p99 alone (request latency), rather than the second cut short.
        shortest = f"{share:.0%}{errors}{self._slice(progress, short=True, first_only=True)}"
        return shortest if len(shortest) <= width else shortest[:max(0, width - 1)] + ELLIPSIS

    @staticmethod
    def _slice(progress: Any, short: bool = False, first_only: bool = False) -> str:
        """The current slice's p99 latencies, when the records manager sent them (a
        progress message of an older mesh, or a slice not begun, has none)."""
        p99 = getattr(progress, "slice_p99_ms", None)
        start, end = getattr(progress, "slice_start_s", None), getattr(
            progress, "slice_end_s", None)
        if not p99 or start is None or end is None:
            return ""
        names = {"request_latency": "lat" if short else "latency",
                 "time_to_first_token": "TTFT"}
        shown = ", ".join(f"{names.get(tag, tag)} {_ms(value)} ms"
                          for tag, value in list(p99.items())[:1 if first_only else None])
        if short:
            return f" | {start:.0f}-{end:.0f}s p99 {shown}"
        return f" | {start:.0f}-{end:.0f} s: p99 {shown}"

    def __call__(self, progress: Any) -> None:
        if progress.elapsed_s < 2.0:  # short runs finish before a bar is worth drawing
            return
        # Fitted to the terminal, since a wrapped line cannot be redrawn in place (the
        # slice's p99 makes the whole line longer than 80 columns); padded to the width to
        # wipe what a longer previous line left behind.
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        self.stream.write("\r" + self.render(progress, width).ljust(width))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.stream.write("\n")


def _ms(value: float) -> str:
    # Three significant digits, but never an exponent: "1245", not "1.25e+03".
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
