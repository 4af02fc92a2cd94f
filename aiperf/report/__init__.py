"""The HTML report of load tests: ``write_report`` (a session, ``aiperf plot``) and
``test_fragment`` (one test's plots for pytest-html extras). docs/report.md.

Importing this package costs nothing: the data readers, the figures and the chart library
(ECharts, vendored in ``assets/``) are loaded only when a report is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["test_fragment", "write_report"]


def write_report(sources: Sequence[Path], out: Path, title: str | None = None) -> Path:
    """Writes one self-contained HTML file at ``out`` from ``sources`` (pytest artifacts
    roots, ``aiperf profile`` or NVIDIA AIPerf artifact directories; several are overlaid)
    and returns its path. A source that cannot be read raises ``ReportError`` naming it."""
    from aiperf.report.data import load_report
    from aiperf.report.page import render_page

    sections = load_report(list(sources))
    html = render_page(sections, title or "pytest-aiperf report", [str(s) for s in sources])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def test_fragment(test_dir: Path, verdicts: list[dict[str, Any]]) -> str:
    """One test's verdict table and plots as an HTML fragment with no script and no
    outside reference (pytest-html inserts extras without running their scripts).
    ``verdicts`` are summary.json's per-objective dicts. A directory that cannot be read
    gives the verdict table and a line saying why there are no plots, never an error."""
    from aiperf.report.page import render_fragment

    return render_fragment(Path(test_dir), verdicts)


# Not a test for pytest, though its name starts with test_.
test_fragment.__test__ = False  # type: ignore[attr-defined]
