"""Whatever a per-request file holds (foreign tools, cancelled runs, odd values), the
report is written and its chart data is plain JSON of finite numbers."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiperf.report import test_fragment, write_report
from aiperf.report.data import load_report
from aiperf.report.figures import section_charts

_NS = st.one_of(st.none(), st.integers(0, 10**19), st.just(0))
# JSON has no NaN or infinity: a file with them is not JSON (a SourceError, tested apart).
_VALUE = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False),
                   st.integers(-10**6, 10**6), st.text(max_size=3), st.booleans(),
                   st.lists(st.floats(0, 100), max_size=3))
_UNIT = st.sampled_from(["ms", "sec", "ns", "us", "tokens", "furlongs", ""])
_TAG = st.sampled_from(["request_latency", "time_to_first_token", "inter_token_latency",
                        "output_sequence_length"])
_RECORD = st.fixed_dictionaries({
    "metadata": st.fixed_dictionaries({
        "benchmark_phase": st.sampled_from(["profiling", "profiling", "warmup"]),
        "request_start_ns": _NS, "request_end_ns": _NS, "credit_issued_ns": _NS},
        optional={"credit_id": st.integers(0, 10**6), "x_request_id": st.text(max_size=8),
                  "timestamp_ns": _NS}),
    "metrics": st.dictionaries(_TAG, st.fixed_dictionaries({"value": _VALUE,
                                                            "unit": _UNIT}), max_size=4),
}, optional={"error": st.one_of(st.none(), st.fixed_dictionaries({
    "code": st.one_of(st.none(), st.integers(0, 600), st.text(max_size=3)),
    "type": st.one_of(st.none(), st.text(max_size=10)),
    "message": st.one_of(st.none(), st.text(max_size=30), st.integers())}))})


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_RECORD, max_size=25),
       st.lists(st.fixed_dictionaries({
           "objective": st.sampled_from(["time_to_first_token.p99", "request_latency.avg",
                                         "inter_token_latency.p50@5s", "bogus"]),
           "threshold": st.sampled_from(["< 10 ms", ">= 1e3 ms", "< baseline + 5 %", "",
                                         "< 1e400 ms", "<= -0 %"]),
           "interval": st.one_of(st.none(), st.lists(st.one_of(
               st.floats(allow_nan=False, allow_infinity=False), st.just("inf")),
                                                     min_size=2, max_size=2)),
           "window": st.sampled_from(["whole run", "window 0-5 s", "steady state 1-2 s (x)"]),
           "verdict": st.sampled_from(["PASS", "FAIL", "INCONCLUSIVE"])}), max_size=3))
def test_any_records_make_a_report(records: list[dict[str, Any]],
                                   verdicts: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        (run / "profile_export_aiperf.json").write_text(json.dumps(
            {"request_throughput": {"unit": "requests/sec", "avg": 1.0}}))
        (run / "profile_export.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in records))
        section = load_report([run])[0]
        section.runs[0].verdicts = verdicts
        charts = section_charts(section)
        assert _finite(charts), "a chart got a non-finite number"
        json.dumps(charts, allow_nan=False)
        write_report([run], Path(tmp) / "r.html")
        assert "<svg" in test_fragment(run, verdicts) or not charts


_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5),
                               st.floats(allow_nan=False, allow_infinity=False),
                               st.text(max_size=4)),
                     lambda inner: st.one_of(st.lists(inner, max_size=3),
                                             st.dictionaries(st.text(max_size=4), inner,
                                                             max_size=3)), max_leaves=8)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({"nodeid": st.sampled_from(["t.py::a", "t.py::b[1]",
                                                                  "t.py::b[2]"])},
                                      optional={key: _JSON for key in (
                                          "run", "profile", "outcome", "error", "metrics",
                                          "objectives", "artifacts", "baseline")}),
                max_size=4))
def test_any_summary_json_makes_a_report_or_names_itself(tests: list[dict[str, Any]]) -> None:
    from aiperf.baselines.sources import SourceError

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "summary.json").write_text(json.dumps({"load_tests": tests}))
        try:
            write_report([root], root / "r.html")
        except SourceError as exc:
            assert str(root) in str(exc)
