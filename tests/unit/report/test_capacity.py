"""The report's capacity section: what the latency-load and goodput charts and the probe
table receive from a known capacity.json (written by ``aiperf.capacity.model`` from
probes of known verdicts and metrics), from an ``aiperf capacity`` artifact dir, from the
``<test>_capacity`` dir of a pytest artifacts dir, and from summary.json's records (a
search's result, a claim's verdict line)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.capacity.model import CapacityResult, Probe
from aiperf.report import write_report
from aiperf.report.cli import cmd_plot, register
from aiperf.report.data import ReportError, load_report, read_capacity
from aiperf.report.figures import capacity_chart, goodput_chart, section_charts
from pytest_aiperf.slo import Verdict, parse_objective

TTFT = parse_objective("time_to_first_token.p99", "< 250 ms")
ERRORS = parse_objective("request_error_rate", "<= 1 %")
# point -> (status, TTFT p50, TTFT p99, latency p99, req/s, goodput, attainment), as a
# search over concurrency probes them: doubling 1, 2, 4, 8 (FAIL), bisecting 6 (PASS), 7.
PROBES = {1: ("PASS", 50.0, 60.0, 400.0, 2.5, 2.5, 1.0),
          2: ("PASS", 52.0, 70.0, 410.0, 4.9, 4.9, 0.99),
          4: ("PASS", 60.0, 120.0, 450.0, 9.5, 9.4, 0.98),
          8: ("FAIL", 180.0, 330.0, 900.0, 11.0, 6.0, 0.55),
          6: ("PASS", 90.0, 200.0, 600.0, 10.8, 10.5, 0.97),
          7: ("INCONCLUSIVE", 130.0, 245.0, 700.0, 10.9, 9.0, 0.9)}


def _probe(point: int) -> Probe:
    status, p50, p99, lat, rate, goodput, attained = PROBES[point]
    ttft = Verdict(TTFT, p99, "PASS" if status == "PASS" else status, 200, 200,
                   (p99 - 20, p99 + 25), 0.95, "order statistics")
    errors = Verdict(ERRORS, 0.0, "PASS", 200, 200, (0.0, 0.9), 0.95, "binomial")
    return Probe(point, status, requests=200, verdicts=[ttft, errors], looks=1,
                 confidence=0.95, seconds=2.0, goodput=goodput, attainment=attained,
                 attainment_interval=(attained - 0.02, min(attained + 0.01, 1.0)),
                 metrics={"request_throughput": rate, "time_to_first_token.p50": p50,
                          "time_to_first_token.p99": p99, "request_latency.p99": lat})


def _result() -> CapacityResult:
    return CapacityResult(over="concurrency", low=1, high=64, tolerance=0.1,
                          probes=[_probe(p) for p in PROBES], max_passing=6,
                          min_failing=7, stopped="converged within 10 %", converged=True,
                          requests=1200, seconds=12.0)


@pytest.fixture
def search_dir(tmp_path: Path) -> Path:
    """An ``aiperf capacity`` artifact dir: capacity.json (the probes' own export dirs
    are not needed to draw the search)."""
    _result().write(tmp_path / "search")
    return tmp_path / "search"


def test_the_curve_receives_every_probe_by_point(search_dir: Path) -> None:
    sections = load_report([search_dir])
    assert len(sections) == 1 and sections[0].runs[0].kind == "capacity"
    data = sections[0].runs[0].capacity
    assert data is not None
    spec = capacity_chart(data, "c")
    assert spec is not None and spec["kind"] == "capacity"
    lines = {s["name"]: s["data"] for s in spec["series"] if s["type"] == "line"}
    assert list(lines) == ["TTFT p50", "TTFT p99", "latency p99"]
    points = sorted(PROBES)
    assert [p[0] for p in lines["TTFT p99"]] == points  # ascending, not in the order run
    assert [p[1] for p in lines["TTFT p50"]] == [PROBES[p][1] for p in points]
    assert [p[1] for p in lines["TTFT p99"]] == [PROBES[p][2] for p in points]
    assert [p[1] for p in lines["latency p99"]] == [PROBES[p][3] for p in points]
    # the hover text says the status and the throughput achieved at the point
    assert lines["TTFT p99"][-1][2].startswith("at 8 concurrent: FAIL; achieved 11 req/s")


def test_each_probe_is_marked_by_its_status_on_the_objectives_line(search_dir: Path) -> None:
    data = load_report([search_dir])[0].runs[0].capacity
    assert data is not None
    spec = capacity_chart(data, "c")
    assert spec is not None
    marks = {s["verdict"]: s["data"] for s in spec["series"] if s["type"] == "scatter"}
    assert {status: [p[0] for p in points] for status, points in marks.items()} == {
        "PASS": [1, 2, 4, 6], "INCONCLUSIVE": [7], "FAIL": [8]}
    # on the TTFT p99 line, which the latency objective reads
    assert [p[1] for p in marks["FAIL"]] == [330.0]
    assert "time_to_first_token.p99 FAIL [310, 355] ms" in marks["FAIL"][0][2]
    # the objective's threshold is a line across; the error rate (not in ms) is not
    assert spec["hlines"] == [{"y": 250.0, "label": "time_to_first_token.p99 < 250 ms",
                               "threshold": True}]
    assert [(v["x"], v["verdict"]) for v in spec["vlines"]] == [(6, "PASS"), (7, "FAIL")]
    assert spec["x"]["name"] == "concurrent requests"


def test_goodput_and_attainment_read_the_search_both_ways(search_dir: Path) -> None:
    data = load_report([search_dir])[0].runs[0].capacity
    assert data is not None
    spec = goodput_chart(data, "g")
    assert spec is not None
    series = {s["name"]: s for s in spec["series"]}
    assert [p[1] for p in series["goodput"]["data"]] == [PROBES[p][5] for p in sorted(PROBES)]
    assert [p[1] for p in series["request throughput"]["data"]] == [
        PROBES[p][4] for p in sorted(PROBES)]
    attainment = series["SLO attainment"]
    assert attainment["y2"] and [p[1] for p in attainment["data"]] == [
        round(PROBES[p][6] * 100, 2) for p in sorted(PROBES)]


def test_a_search_without_latencies_draws_no_curve_but_lists_its_probes(tmp_path: Path) -> None:
    result = CapacityResult(over="request_rate", low=1, high=8, tolerance=0.1, probes=[
        Probe(1.0, "ERROR", requests=10, cause="connection refused\nat 127.0.0.1:9")],
        stopped="every request failed", error="connection refused")
    result.write(tmp_path / "dead")
    sections = load_report([tmp_path / "dead"])
    run = sections[0].runs[0]
    assert run.capacity is not None and capacity_chart(run.capacity, "c") is None
    assert section_charts(sections[0]) == []
    html = write_report([tmp_path / "dead"], tmp_path / "r.html").read_text()
    assert 'data-verdict="ERROR"' in html and "ERROR: connection refused" in html
    assert "no point passed" in html


def test_aiperf_plot_on_a_capacity_artifact_dir(search_dir: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    out = tmp_path / "report.html"
    args = parser.parse_args(["plot", str(search_dir), "-o", str(out)])
    assert cmd_plot(args) == 0
    html = out.read_text()
    specs = json.loads(html.split('id="aiperf-charts">', 1)[1].split("</script>", 1)[0])
    assert [s["id"] for s in specs] == ["test-1-capacity-latency-0", "test-1-capacity-goodput-0"]
    for spec in specs:
        assert f'id="{spec["id"]}" data-kind="capacity"' in html
    table = html.split('class="capacity-probes"', 1)[1].split("</table>", 1)[0]
    # a row per probe in the order run, its status as its verdict
    assert [row.split('"')[1] for row in table.split('data-point=')[1:]] == [
        str(p) for p in PROBES]
    assert table.count('data-verdict="PASS"') == 4 and table.count('data-verdict="FAIL"') == 1
    assert "capacity 6 concurrent (fails at 7): 6 probes, 1200 requests" in html


def _summary(root: Path, entries: list[dict[str, Any]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps({"load_tests": entries}))


def _entry(nodeid: str, profile: str, **extra: Any) -> dict[str, Any]:
    return {"nodeid": nodeid, "run": 1, "profile": profile, "outcome": "PASS", "error": None,
            "warnings": [], "metrics": {}, "objectives": [], "artifacts": None, **extra}


def test_a_pytest_search_from_summary_json_and_from_its_capacity_dir(tmp_path: Path) -> None:
    result = _result()
    nodeid = "tests/test_cap.py::test_search[a b]"
    root = tmp_path / "artifacts"
    _summary(root, [_entry(nodeid, "capacity search over concurrency",
                           capacity={"search": result.headline(), **result.to_dict()})])
    # what aiperf.capacity(...) writes beside it: <safe_dirname(nodeid)>_capacity/
    result.write(root / "tests_test_cap.py_test_search_a_b_capacity")
    whole = load_report([root])
    run = whole[0].runs[0]
    assert whole[0].key == nodeid and run.capacity is not None
    assert run.notes == []  # no "no per-request artifacts": a search has none of its own
    alone = load_report([root / "tests_test_cap.py_test_search_a_b_capacity"])
    assert alone[0].key == nodeid  # named by its test, from the summary.json beside it
    for sections in (whole, alone):
        data = sections[0].runs[0].capacity
        assert data is not None
        assert [p.point for p in data.curve()] == sorted(PROBES)
        assert (data.max_passing, data.min_failing) == (6, 7)


def test_a_claims_verdict_line_is_where_the_verdicts_are(tmp_path: Path) -> None:
    line = ("capacity >= 16 concurrent: PASS (at 16: all objectives PASS; at 20: "
            "time_to_first_token.p99 FAIL [312, 355] ms)")
    root = tmp_path / "artifacts"
    _summary(root, [
        _entry("t.py::test_claim", "chat c=16", capacity={
            "claim": "capacity >= 16 concurrent", "over": "concurrency", "point": 16,
            "status": "PASS", "line": line, "headroom": None}),
        _entry("t.py::test_claim", "chat c=20 headroom", run=2, capacity={
            "claim": "capacity >= 16 concurrent", "role": "headroom", "point": 20,
            "status": "FAIL", "summary": "time_to_first_token.p99 FAIL [312, 355] ms",
            "objectives": []})])
    sections = load_report([root])
    assert sections[0].runs[0].claim == {"status": "PASS", "line": line}
    assert any(note.startswith("headroom step of capacity >= 16 concurrent: at 20: FAIL")
               for note in sections[1].runs[0].notes)
    html = write_report([root], tmp_path / "r.html").read_text()
    claim = '<span class="capacity-claim" data-verdict="PASS"><span class="v-PASS">PASS</span> '
    # in the session table's objectives cell and in the test's section
    assert html.count(claim) == 2 and "at 20: time_to_first_token.p99 FAIL [312, 355] ms" in html


@pytest.mark.parametrize(("document", "says"), [
    ([], "not a JSON object"),
    ({"probes": []}, "no 'over'"),
    ({"over": "concurrency"}, "no 'probes' list"),
    ({"over": "concurrency", "probes": [{"status": "PASS"}]}, "probes[0] has no numeric"),
    ({"over": "concurrency", "probes": [{"point": "8"}]}, "probes[0] has no numeric"),
])
def test_a_bad_capacity_json_is_an_error_naming_the_file_and_key(
        tmp_path: Path, document: Any, says: str) -> None:
    (tmp_path / "capacity.json").write_text(json.dumps(document))
    with pytest.raises(ReportError, match=re.escape(says)) as caught:
        load_report([tmp_path])
    assert str(tmp_path / "capacity.json") in str(caught.value)


def test_a_probe_missing_its_extras_is_still_listed() -> None:
    data = read_capacity({"over": "concurrency", "probes": [
        {"point": 4, "status": "PASS", "metrics": {"request_latency.p99": None}},
        {"point": 2, "status": "FAIL", "goodput": "fast", "slo_attainment_interval": [1]}]},
        "here")
    assert [(p.point, p.goodput, p.metrics, p.attainment_interval) for p in data.probes] == [
        (4, None, {}, None), (2, None, {}, None)]
    assert capacity_chart(data, "c") is None and goodput_chart(data, "g") is None


def test_an_objective_on_a_statistic_off_the_curve_is_drawn_as_measured(tmp_path: Path) -> None:
    p90 = parse_objective("time_to_first_token.p90", "< 60 ms")
    probes = [Probe(point, status, requests=60, verdicts=[Verdict(
        p90, measured, status, 60, 60, (measured - 2, measured + 2), 0.95, "os")],
        metrics={"time_to_first_token.p99": measured + 5})
        for point, status, measured in ((4, "PASS", 42.0), (2, "PASS", 41.0), (5, "FAIL", 77.5))]
    CapacityResult(over="concurrency", low=1, high=8, tolerance=0.1, probes=probes,
                   max_passing=4, min_failing=5).write(tmp_path)
    data = load_report([tmp_path])[0].runs[0].capacity
    assert data is not None
    spec = capacity_chart(data, "c")
    assert spec is not None
    series = {s["name"]: s["data"] for s in spec["series"]}
    assert [p[:2] for p in series["TTFT p90 (measured)"]] == [
        [2, 41.0], [4, 42.0], [5, 77.5]]
    # the probes are marked on the values their objective judged, not on the p99 line
    assert [p[:2] for p in series["FAIL probes"]] == [[5, 77.5]]
    assert spec["hlines"][0]["y"] == 60.0


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=4),
                 st.floats(allow_nan=True, allow_infinity=True), st.lists(st.floats(), max_size=3))
_VERDICT = st.fixed_dictionaries({}, optional={
    "objective": st.sampled_from(["time_to_first_token.p90", "request_latency.p99", "x"]),
    "threshold": st.one_of(st.sampled_from(["< 250 ms", "<= 1 %", "< baseline"]), _ANY),
    "unit": st.one_of(st.sampled_from(["ms", "%"]), _ANY), "verdict": _ANY, "measured": _ANY,
    "interval": _ANY})
_PROBE = st.fixed_dictionaries({"point": st.one_of(st.integers(1, 64), st.floats(0.5, 100))},
                               optional={
    "status": _ANY, "requests": _ANY, "looks": _ANY, "goodput": _ANY, "slo_attainment": _ANY,
    "slo_attainment_interval": _ANY, "cause": _ANY,
    "metrics": st.one_of(_ANY, st.dictionaries(st.sampled_from(
        ["request_throughput", "time_to_first_token.p50", "time_to_first_token.p99",
         "request_latency.p99"]), _ANY)),
    "objectives": st.one_of(_ANY, st.lists(st.one_of(_VERDICT, _ANY), max_size=3))})


@settings(max_examples=150, deadline=None)
@given(st.fixed_dictionaries({"over": st.sampled_from(["concurrency", "request_rate"]),
                              "probes": st.lists(_PROBE, max_size=6)},
                             optional={"max_passing": _ANY, "min_failing": _ANY,
                                       "requests": _ANY, "seconds": _ANY, "stopped": _ANY}))
def test_any_capacity_json_draws_or_is_a_clear_error(document: dict[str, Any]) -> None:
    """Whatever a hand-edited or foreign capacity.json holds past its required keys, the
    charts and the table are built (what cannot be drawn is left out), in JSON the page
    can embed."""
    from aiperf.report.data import RunData, Section
    from aiperf.report.page import capacity_block

    data = read_capacity(document, "capacity.json")
    run = RunData(label="s", test="s", kind="capacity", directory=None, capacity=data)
    specs = section_charts(Section("s", "s", [run], "test-1"))
    json.dumps(specs, allow_nan=False)  # no NaN or infinity reaches the page
    assert capacity_block([run]).count("data-point=") == len(document["probes"])
