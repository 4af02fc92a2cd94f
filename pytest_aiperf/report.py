"""Reports of the session's load tests: the terminal summary, ``summary.json`` and the
GitHub step summary. The last two implement ``pytest_aiperf_report``, the hook any other
reporter (a dashboard uploader, say) implements the same way."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_aiperf.baseline import comparison_lines
from pytest_aiperf.session import LoadTestRecord

GITHUB_ENV = "GITHUB_STEP_SUMMARY"
_COLUMNS = ("Test", "Profile", "Sent", "req/s", "TTFT p99", "Lat p99", "Err %", "Verdict")
_LEFT = (0, 1, 7)  # left-aligned columns


def _cells(record: LoadTestRecord) -> tuple[str, ...]:
    m = record.key_metrics()

    def fmt(name: str, spec: str) -> str:
        return format(m[name], spec) if name in m else "-"

    return (record.label, record.profile, str(record.sent) if record.result or record.sent
            else "-",
            fmt("request_throughput", ",.1f"),
            fmt("time_to_first_token.p99", ",.1f") + (" ms" if "time_to_first_token.p99" in m
                                                       else ""),
            fmt("request_latency.p99", ",.1f") + (" ms" if "request_latency.p99" in m else ""),
            fmt("request_error_rate", ".1f"), record.outcome)


def render_terminal(records: list[LoadTestRecord], width: int = 100) -> list[str]:
    rows = [_COLUMNS, *(_cells(r) for r in records)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    overflow = sum(widths) + 2 * (len(widths) - 1) - width
    if overflow > 0:  # keep 100 columns: shorten the test id first
        widths[0] = max(12, widths[0] - overflow)
    lines = []
    for index, row in enumerate(rows):
        cells = [_fit(c, widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(c.ljust(widths[i]) if i in _LEFT else c.rjust(widths[i])
                               for i, c in enumerate(cells)).rstrip())
        if index == 0:
            lines.append("-" * min(width, len(lines[0])))
    lines.extend(baseline_block(records))
    lines.extend(f"  {kind} {label}: {text}" for kind, label, text in _notes(records, 120))
    return lines


def baseline_block(records: list[LoadTestRecord]) -> list[str]:
    """Per compared run: what it was compared with (or why not), then before, after, the
    change with its interval and the status of each statistic."""
    lines = []
    for record in records:
        if record.baseline is None:
            continue
        if not lines:
            lines.append("vs baseline:")
        lines.append(f"  {record.label}: {record.baseline.line()}")
        lines.extend(comparison_lines(record.comparisons, None, indent="    "))
        if record.baseline.machine:
            lines.append(f"    (another machine: {'; '.join(record.baseline.machine)})")
    return lines


def _notes(records: list[LoadTestRecord], limit: int) -> Iterator[tuple[str, str, str]]:
    """(CAPACITY / FAIL / ERROR / WARNING, test label, what) under the table: a capacity
    claim's verdict line (whole: it is the verdict), every breached objective, error and
    warning, the last two cut to ``limit`` characters."""
    for record in records:
        claim = record.capacity.get("line") if record.capacity else None
        if isinstance(claim, str):
            yield "CAPACITY", record.label, claim
        for verdict in record.verdicts:
            if verdict.status != "PASS":
                where = "" if verdict.window == "whole run" else f" ({verdict.window})"
                bounds = verdict.interval_text
                bounds = "" if bounds == "no interval" else f" {bounds}"
                yield (verdict.status, record.label, f"{verdict.objective.key} = "
                       f"{verdict.measured_text}{bounds}, needs "
                       f"{verdict.objective.text}{where}")
        if record.error:
            yield "ERROR", record.label, record.error.splitlines()[0][:limit]
        for warning in record.warnings:
            yield "WARNING", record.label, warning[:limit]
        if record.saved:
            yield "STORED", record.label, _relative_path(record.saved)


def _relative_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def render_markdown(records: list[LoadTestRecord]) -> str:
    lines = ["### pytest-aiperf load tests", "", "| " + " | ".join(_COLUMNS) + " |",
             "|" + "---|" * len(_COLUMNS)]
    for record in records:
        cells = list(_cells(record))
        cells[-1] = {"PASS": "✅ PASS", "FAIL": "❌ FAIL", "ERROR": "❌ ERROR",
                     "INVALID": "❌ INVALID"}.get(
            cells[-1], cells[-1])
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines.extend(_objective_rows(records))
    lines.extend(_comparison_rows(records))
    lines.extend(f"- **{label}**: {kind.lower()}: {text}"
                 for kind, label, text in _notes(records, 200))
    return "\n".join(lines) + "\n"


_OBJECTIVE_COLUMNS = ("Test", "Objective", "Measured", "Interval", "Confidence", "Threshold",
                      "Verdict", "n", "Method", "Window")


def _objective_rows(records: list[LoadTestRecord]) -> list[str]:
    """Every objective of every run with its interval: what summary.json carries."""
    rows = []
    for record in records:
        for v in record.verdicts:
            confidence = "-" if v.confidence is None else f"{v.confidence:.4g}"
            cells = (record.label, v.objective.key, v.measured_text, v.interval_text,
                     confidence, v.objective.text, v.status, str(v.count), v.method, v.window)
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    if not rows:
        return []
    return ["", "| " + " | ".join(_OBJECTIVE_COLUMNS) + " |",
            "|" + "---|" * len(_OBJECTIVE_COLUMNS), *rows, ""]


_COMPARISON_COLUMNS = ("Test", "Metric", "Before", "After", "Change [interval]", "Status",
                       "Rule")


def _comparison_rows(records: list[LoadTestRecord]) -> list[str]:
    rows = []
    for record in records:
        if record.baseline is not None and not record.comparisons:
            rows.append(f"| {record.label} | {record.baseline.line()} |  |  |  |  |  |")
        for c in record.comparisons:
            cells = (record.label, c.key, f"{c.before:,.2f} {c.unit}",
                     f"{c.after:,.2f} {c.unit}", c.change_text(), c.word,
                     c.rule if c.gated else "(informational)")
            rows.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    if not rows:
        return []
    return ["", "| " + " | ".join(_COMPARISON_COLUMNS) + " |",
            "|" + "---|" * len(_COMPARISON_COLUMNS), *rows, ""]


class BuiltinReporters:
    """summary.json, the HTML report (drawn from the artifacts, so after summary.json) and
    the GitHub step summary; what became of the HTML report is kept for the terminal."""

    def __init__(self, artifacts: Path | None, html: Path | None = None) -> None:
        self.artifacts = artifacts
        self.html = html
        self.html_written: Path | None = None
        self.html_error: str | None = None

    @pytest.hookimpl
    def pytest_aiperf_report(self, session: pytest.Session,
                             results: list[LoadTestRecord]) -> None:
        if self.artifacts is not None and results:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            (self.artifacts / "summary.json").write_text(json.dumps(
                {"load_tests": [r.to_dict() for r in results]}, indent=2), encoding="utf-8")
        if self.html is not None and self.artifacts is not None and results:
            self._write_html(self.artifacts, self.html,
                             f"pytest-aiperf: {Path(session.config.rootpath).name}")
        target = os.environ.get(GITHUB_ENV)
        if target and results:
            with open(target, "a", encoding="utf-8") as handle:
                handle.write(render_markdown(results))

    def _write_html(self, artifacts: Path, out: Path, title: str) -> None:
        from pytest_aiperf.html import INSTALL_HINT, write_session_report

        try:
            self.html_written = write_session_report(artifacts, out, title)
        except ImportError as exc:
            self.html_error = f"{out}: not written ({INSTALL_HINT}): {exc}"
        except Exception as exc:  # the tests ran and were judged: say so, do not crash
            self.html_error = f"{out}: not written: {type(exc).__name__}: {exc}"

    def html_lines(self) -> list[str]:
        """The terminal summary's lines about the HTML report."""
        if self.html is None:
            return []
        if self.html_error is not None:
            return [f"html report ERROR: {self.html_error}"]
        if self.html_written is None:
            return [f"html report: none written to {_relative_path(str(self.html))} (no load "
                    "test ran)"]
        return [f"html report: {_relative_path(str(self.html_written))}"]
