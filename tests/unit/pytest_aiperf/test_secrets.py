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


def test_a_run_that_failed_everywhere_names_its_url_without_the_password() -> None:
    from aiperf.common.config import UserConfig
    from aiperf.results import ProfileResult
    from pytest_aiperf.session import unusable_message

    result = ProfileResult.from_dict({"metrics": {
        "request_count": {"unit": "requests", "avg": 0},
        "error_request_count": {"unit": "requests", "avg": 3}}})
    message = unusable_message(UserConfig(url="http://me:hunter22@127.0.0.1:9"), result)
    assert "hunter22" not in message and "127.0.0.1:9" in message
    assert message.startswith("every request to http://***@127.0.0.1:9 failed (3 of 3)")


def test_a_cut_secret_in_a_report_is_masked_too() -> None:
    report = pytest.TestReport("t.py::test", ("t.py", 1, "test"), {}, "failed",
                               "E   body: sk-test-SECR", "call", [])
    scrub_report(report, {"sk-test-SECRET123"})
    assert "sk-test-SECR" not in str(report.longrepr)
