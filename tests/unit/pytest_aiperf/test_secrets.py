"""A raw secret in a report's text is masked before pytest prints or stores it."""

from __future__ import annotations

import pytest

from pytest_aiperf.secrets import scrub_report


def test_longrepr_sections_and_properties_are_scrubbed() -> None:
    report = pytest.TestReport(
        "t.py::test", ("t.py", 1, "test"), {}, "failed",
        "E   dumped = {'api_key': 'sk-test-SECRET123'}", "call",
        [("Captured log call", "Bearer sk-test-SECRET123")],
        user_properties=[("aiperf.x", "sk-test-SECRET123"), ("aiperf.n", 3)])
    scrub_report(report, {"sk-test-SECRET123"})
    text = str(report.longrepr) + repr(report.sections) + repr(report.user_properties)
    assert "sk-test-SECRET123" not in text
    assert "***" in str(report.longrepr) and ("aiperf.n", 3) in report.user_properties
