"""Each load test's pytest-html extra: its plots when its artifacts can be drawn, else a
note saying why (a report never fails a test), with the session's secrets taken out."""

from __future__ import annotations

from pathlib import Path

from pytest_aiperf.html import pytest_html_extras
from pytest_aiperf.session import LoadTestRecord


def test_a_run_without_artifacts_gets_a_note() -> None:
    record = LoadTestRecord("t.py::test_down", "chat c=1 n=2", outcome="ERROR")
    [extra] = pytest_html_extras([record], str)
    assert extra["format_type"] == "html"
    assert extra["content"] == ("<h3>pytest-aiperf: test_down</h3>"
                                "<p>no artifacts: the run did not complete</p>")


def test_artifacts_that_cannot_be_drawn_get_a_note_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "profile_export_aiperf.json").write_text("{not json")
    record = LoadTestRecord("t.py::test_a", "chat c=1 n=2", artifacts=tmp_path)
    [extra] = pytest_html_extras([record], str)
    assert extra["content"].startswith("<h3>pytest-aiperf: test_a</h3>")
    assert "profile_export_aiperf.json: not JSON" in extra["content"]


def test_each_fragment_is_scrubbed_and_each_run_has_one() -> None:
    records = [LoadTestRecord("t.py::test_sk-live-123", "chat", run=run) for run in (1, 2)]
    extras = pytest_html_extras(records, lambda text: text.replace("sk-live-123", "***"))
    assert [e["content"].split("</h3>")[0] for e in extras] == [
        "<h3>pytest-aiperf: test_***", "<h3>pytest-aiperf: test_*** (run 2)"]
