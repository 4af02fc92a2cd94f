"""The session's HTML report (``--aiperf-html``) and each load test's plots in pytest-html.

Both are drawn by ``aiperf.report`` from the artifacts the session writes (with neither
``--aiperf-artifacts`` nor a report asked for, no artifact is written). This module is
imported only when one of them is asked for, so a session without pays nothing for
``aiperf.report`` or its plotting library.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_aiperf.session import LoadTestRecord

# The report needs no extra: aiperf.report uses the core dependencies (numpy, msgspec) and
# the ECharts build vendored in its package data, so an ImportError there is a broken or
# partial install, which only reinstalling mends (the `report` extra is empty).
INSTALL_HINT = ("the report needs only pytest-aiperf's own dependencies: reinstall "
                "pytest-aiperf")


def write_session_report(artifacts: Path, out: Path, title: str | None = None) -> Path:
    """The report of the session whose artifacts root (summary.json and a directory per
    test) is ``artifacts``, written to ``out``; returns the file written."""
    from aiperf.report import write_report

    out.parent.mkdir(parents=True, exist_ok=True)
    return write_report([artifacts], out, title)


def _fragment(record: LoadTestRecord) -> str:
    """The plots and verdict table of one run; a short note in their place when they
    cannot be drawn (the test's outcome does not depend on its report)."""
    title = f"<h3>pytest-aiperf: {html.escape(record.label)}</h3>"
    if record.artifacts is None or not record.artifacts.is_dir():
        return f"{title}<p>no artifacts: the run did not complete</p>"
    try:
        from aiperf.report import test_fragment

        return title + test_fragment(record.artifacts, [v.to_dict() for v in record.verdicts])
    except ImportError as exc:
        return f"{title}<p>no plots ({html.escape(INSTALL_HINT)}): {html.escape(str(exc))}</p>"
    except Exception as exc:  # a broken plot must not break the test's report
        return (f"{title}<p>no plots: {html.escape(type(exc).__name__)}: "
                f"{html.escape(str(exc))}</p>")


def pytest_html_extras(records: list[LoadTestRecord],
                       scrub: Callable[[str], str]) -> list[dict[str, Any]]:
    """pytest-html extras (``report.extras``) of a test's runs: one HTML fragment each,
    ``scrub`` taking the session's secrets out (an error a server sent back may quote one)."""
    from pytest_html import extras

    return [extras.html(scrub(_fragment(record))) for record in records]
