"""The session's pictures from a user's seat: ``--aiperf-html`` (alone and under
pytest-xdist) and each load test's plots in pytest-html (the ``-v`` histogram and a session
without a report: test_live_progress.py). Real sessions against the built-in mock server."""

from __future__ import annotations

import html
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.pytester_ini import INI

TWO_TESTS = """
import pytest

@pytest.mark.aiperf(streaming=True, concurrency=2, request_count=16, osl=8,
                    slo={"time_to_first_token.p50": "< 5 s", "request_latency.p99": "< 1 us"})
def test_strict(aiperf_result):
    pass

@pytest.mark.aiperf(streaming=True, concurrency=2, request_count=16, osl=8,
                    slo={"request_error_rate": "<= 50 %"})
def test_easy(aiperf_result):
    pass
"""
_OBJECTIVES = ("time_to_first_token.p50", "request_latency.p99", "request_error_rate")


@pytest.fixture
def short_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir of the session's own (short: the mesh's IPC sockets live there too), to
    see that the temporary artifacts dir is gone afterwards."""
    path = Path(tempfile.mkdtemp(prefix="aiperf-ui-"))
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    monkeypatch.setenv("TMPDIR", str(path))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _sections(page: str) -> dict[str, str]:
    """Each test's section of the report, by its data-test key."""
    found = re.findall(r'<section class="test" id="[^"]*" data-test="([^"]*)"(.*?)</section>',
                       page, flags=re.S)
    return {html.unescape(key): body for key, body in found}


def _verdict_rows(text: str) -> list[tuple[str, str]]:
    """(objective, verdict) of each row of the verdict tables in ``text``."""
    rows = []
    for table in re.findall(r'<table class="verdicts">(.*?)</table>', text, flags=re.S):
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
            cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                     for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)]
            key = next((c for c in cells if c in _OBJECTIVES), None)
            verdict = re.search(r'data-verdict="([A-Z]+)"', row)
            if key and verdict:
                rows.append((key, verdict.group(1)))
    return rows


def _expect_verdicts(text: str, test: str) -> None:
    rows = _verdict_rows(text)
    if test == "test_strict":
        assert ("request_latency.p99", "FAIL") in rows, rows
        assert ("time_to_first_token.p50", "PASS") in rows, rows
    else:
        assert rows == [("request_error_rate", "PASS")], rows


def test_the_html_report_has_each_load_tests_section_and_verdicts_and_pytest_html_its_plots(
    project: pytest.Pytester, short_tmp: Path,
) -> None:
    project.makepyfile(TWO_TESTS)
    result = project.runpytest_inprocess("--aiperf-html", "out/report.html",
                                         "--html", "pytest-html.html")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*= aiperf load tests =*", "html report: out/report.html"])
    assert "artifacts:" not in result.stdout.str()  # no --aiperf-artifacts: nothing kept
    assert not list(short_tmp.glob("aiperf-artifacts-*"))  # the temporary dir is gone
    sections = _sections((project.path / "out" / "report.html").read_text(encoding="utf-8"))
    assert len(sections) == 2, list(sections)
    for test in ("test_strict", "test_easy"):
        body = next(b for key, b in sections.items() if key.endswith(test))
        _expect_verdicts(body, test)
    # pytest-html: each load test's extras carry its verdict table and its plots.
    page = (project.path / "pytest-html.html").read_text(encoding="utf-8")
    blob = re.search(r'data-jsonblob="(.*?)"', page, flags=re.S)
    assert blob is not None
    tests = json.loads(html.unescape(blob.group(1)))["tests"]
    for test in ("test_strict", "test_easy"):
        entries = next(v for key, v in tests.items() if key.endswith(f"::{test}"))
        fragments = [e["content"] for entry in entries for e in entry["extras"]
                     if e["format_type"] == "html"]
        assert len(fragments) == 1 and "<svg" in fragments[0], fragments
        _expect_verdicts(fragments[0], test)


def test_under_xdist_the_controller_writes_one_report_of_every_workers_tests(
    project: pytest.Pytester, short_tmp: Path,
) -> None:
    project.makepyfile(TWO_TESTS)
    project.makeini(INI + "aiperf_html = report.html\n")  # the ini key this time
    # One worker is enough: the report needs the controller and its workers to share the
    # temporary artifacts dir.
    result = project.runpytest_subprocess("-n", "1", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert result.stdout.str().count("html report: report.html") == 1
    page = (project.path / "report.html").read_text(encoding="utf-8")
    assert f"<title>pytest-aiperf: {project.path.name}</title>" in page
    sections = _sections(page)
    assert sorted(key.rsplit("::", 1)[-1] for key in sections) == ["test_easy", "test_strict"]
    assert not list(short_tmp.glob("aiperf-artifacts-*"))


def test_a_report_file_that_is_a_directory_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile(TWO_TESTS)
    (project.path / "out").mkdir()
    result = project.runpytest_inprocess("--aiperf-html", "out")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aiperf-html / aiperf_html: */out is a directory*"])
