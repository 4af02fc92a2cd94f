"""The report file, a test's fragment, ``aiperf plot``, and what importing costs."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from aiperf.report import test_fragment, write_report
from aiperf.report.cli import register
from aiperf.results import ProfileResult
from tests.harness.synthetic_runs import synthetic_result
from tests.unit.report.conftest import session_root, verdict

AIPERF013 = Path(__file__).parents[2] / "data" / "aiperf013"


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text of the chart-spec script."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data


def _parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def _specs(parser: _Elements) -> list[dict]:
    (index,) = [i for i, (tag, attrs) in enumerate(e for e in parser.elements
                                                    if e[0] == "script")
                if attrs.get("id") == "aiperf-charts"]
    return json.loads(parser.scripts[index])


def test_the_report_is_one_offline_file_with_a_div_per_chart(tmp_path: Path,
                                                            run_200: ProfileResult) -> None:
    checks = [verdict("time_to_first_token.p90", "< 100 ms", 60.0, [55.0, 65.0])]
    session_root(tmp_path / "root", {
        "t.py::test_ladder[1]": (synthetic_result(40, slots=1), checks, "PASS"),
        "t.py::test_ladder[4]": (run_200, [], "FAIL")})
    out = write_report([tmp_path / "root"], tmp_path / "out" / "r.html", title="My <run>")
    html = out.read_text()
    parser = _parse(html)
    # nothing fetched from elsewhere: no src= or href= outside the page
    for _, attrs in parser.elements:
        for name in ("src", "href"):
            assert not (attrs.get(name) or "#").split("#")[0], attrs
    assert "<title>My &lt;run&gt;</title>" in html
    assert "echarts" in parser.scripts[1] and "aiperf-charts" in parser.scripts[2]
    specs = _specs(parser)
    charts = [attrs["id"] for tag, attrs in parser.elements if tag == "div"
              and "chart" in (attrs.get("class") or "").split()]
    assert charts == [s["id"] for s in specs]
    assert charts[0] == "ladder-1" and len(charts) == 1 + 2 * 6
    rows = [attrs for tag, attrs in parser.elements if tag == "tr" and "data-test" in attrs]
    assert [r["data-test"] for r in rows] == ["t.py::test_ladder[1]", "t.py::test_ladder[4]"]
    links = [attrs["href"] for tag, attrs in parser.elements if tag == "a"]
    # the session table's rows to the sections, each section back to the table
    assert links == ["#test-1", "#test-2", "#session", "#session"]
    sections = [attrs["id"] for tag, attrs in parser.elements if tag == "section"]
    assert sections == ["test-1", "test-2"]
    verdicts = [attrs["data-verdict"] for tag, attrs in parser.elements
                if tag == "td" and "data-verdict" in attrs]
    # the session table's two outcomes, then the first test's objective
    assert verdicts == ["PASS", "FAIL", "PASS"]


def test_the_report_of_nvidia_aiperf_artifacts(tmp_path: Path) -> None:
    out = write_report([AIPERF013], tmp_path / "a.html")
    specs = _specs(_parse(out.read_text()))
    assert [s["kind"] for s in specs] == ["cdf", "cdf", "cdf", "latency", "throughput",
                                          "errors"]
    errors = specs[-1]
    assert [(s["name"], sum(p[1] for p in s["data"])) for s in errors["series"]] == [
        ("500 Internal Server Error", 2)]


def test_a_fragment_is_static_svg_with_its_verdicts(tmp_path: Path,
                                                    run_200: ProfileResult) -> None:
    from aiperf.exporters.base import export_files

    export_files(run_200, tmp_path / "t")
    checks = [verdict("time_to_first_token.p50", "< 60 ms", 40.0, [38.0, 42.0], "FAIL")]
    html = test_fragment(tmp_path / "t", checks)
    assert "<script" not in html and "http" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    parser = _parse(html)
    kinds = [attrs["data-kind"] for tag, attrs in parser.elements if tag == "svg"]
    assert kinds == ["cdf", "cdf", "cdf", "latency", "throughput", "errors"]
    lines = [attrs["data-value"] for tag, attrs in parser.elements
             if tag == "line" and attrs.get("class") == "threshold"]
    assert lines == ["60.0"]
    assert re.search(r'data-verdict="FAIL"', html)
    # a point's hover text names the request, its times and its error
    assert re.search(r"<title>failed: request \d+, start [\d.]+ s, end [\d.]+ s, [\d.]+ ms, "
                     r"500 Server Error: x</title>", html)


def _plot(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aiperf")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_aiperf_plot_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       run_200: ProfileResult) -> None:
    session_root(tmp_path / "root", {"t.py::test_a": (run_200, [], "PASS")})
    out = tmp_path / "plot.html"
    assert _plot(["plot", str(tmp_path / "root"), str(AIPERF013), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    specs = _specs(_parse(out.read_text()))
    assert [s["id"] for s in specs if s["kind"] == "cdf"] == [
        "test-1-cdf-time_to_first_token", "test-1-cdf-inter_token_latency",
        "test-1-cdf-request_latency", "test-2-cdf-time_to_first_token",
        "test-2-cdf-inter_token_latency", "test-2-cdf-request_latency"]


def test_aiperf_plot_names_a_bad_source(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _plot(["plot", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.html")]) == 2
    assert f"aiperf plot: {tmp_path / 'nowhere'}" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_importing_the_report_package_loads_nothing_of_the_report() -> None:
    """A session without a report pays nothing: ``aiperf.report`` alone imports no reader,
    no figure code and reads no chart library."""
    code = ("import sys\nimport pytest_aiperf.plugin, aiperf.cli, aiperf.report\n"
            "print(sorted(m for m in sys.modules if m.startswith('aiperf.report.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[]"


def test_a_fragment_of_a_missing_directory_still_has_its_verdicts(tmp_path: Path) -> None:
    html = test_fragment(tmp_path / "gone", [verdict("request_latency.p50", "< 1 s", 0.5,
                                                     [0.4, 0.6])])
    assert 'data-verdict="PASS"' in html and "<svg" not in html
    assert f"No plots: {tmp_path / 'gone'}" in html


def test_a_test_that_left_no_artifacts_is_a_row_and_a_note(tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(json.dumps({"load_tests": [
        {"nodeid": "t.py::test_broken", "profile": "chat c=1", "outcome": "ERROR",
         "error": "RunError: the <server> refused", "objectives": [], "artifacts": None}]}))
    html = write_report([tmp_path], tmp_path / "r.html").read_text()
    parser = _parse(html)
    assert _specs(parser) == []
    assert [attrs["data-verdict"] for tag, attrs in parser.elements
            if tag == "td" and "data-verdict" in attrs] == ["ERROR"]
    assert "error: RunError: the &lt;server&gt; refused" in html
    assert "no per-request artifacts" in html


def test_hostile_names_stay_text(tmp_path: Path, run_200: ProfileResult) -> None:
    """A test name in the HTML, a source's name in the chart data (a legend): neither can
    close or comment out a script element."""
    name = "t.py::test_x[</script><script>alert(1)</script><!--]"
    roots = [tmp_path / "a<!--<script>", tmp_path / "b<script>"]
    for root in roots:
        session_root(root, {name: (run_200, [], "PASS")})
    html = write_report(roots, tmp_path / "r.html").read_text()
    parser = _parse(html)
    assert len(parser.scripts) == 3  # the specs, the library, report.js: none injected
    rows = [attrs["data-test"] for tag, attrs in parser.elements if tag == "tr"
            and "data-test" in attrs]
    assert rows == [name, name]
    specs = _specs(parser)
    assert [s["name"] for s in specs[0]["series"]] == [str(r) for r in roots]
