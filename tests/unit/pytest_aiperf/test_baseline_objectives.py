"""Relative objectives (``"< baseline + 10 %"``) and gates (``regress=``) as they are parsed
at collection: every accepted form, and every refusal naming the key and the forms."""

from __future__ import annotations

import math

import pytest

from pytest_aiperf.baseline import BaselineError, merged_rules, parse_rules, regress_rules
from pytest_aiperf.slo import BaselineBound, SLOError, Verdict, parse_objective


@pytest.mark.parametrize(("text", "kind", "amount", "threshold_of_200"), [
    ("< baseline + 10 %", "fraction", 0.10, 220.0),
    ("<= baseline * 1.1", "factor", 1.1, 220.0),
    ("< baseline + 20 ms", "absolute", 20.0, 220.0),
    ("< baseline + 0.02 s", "absolute", 20.0, 220.0),  # converted to the display unit
    ("< baseline - 5 %", "fraction", -0.05, 190.0),
    ("<= baseline", "absolute", 0.0, 200.0),
])
def test_each_relative_form_gives_its_threshold_from_the_baseline(
    text: str, kind: str, amount: float, threshold_of_200: float
) -> None:
    objective = parse_objective("time_to_first_token.p99", text)
    assert objective.relative and objective.baseline == BaselineBound(kind, pytest.approx(amount))
    assert math.isnan(objective.threshold)  # known only once the baseline is read
    assert objective.baseline.threshold(200.0) == pytest.approx(threshold_of_200)
    assert objective.text == text and objective.unit == "ms"


def test_a_throughput_may_be_relative_and_takes_no_statistic() -> None:
    objective = parse_objective("request_throughput", "> baseline - 5 %")
    assert objective.op == ">" and objective.baseline == BaselineBound("fraction", -0.05)
    assert objective.baseline.threshold(100.0) == pytest.approx(95.0)
    token_rate = parse_objective("output_token_throughput", ">= baseline * 0.9")
    assert token_rate.baseline.threshold(100.0) == pytest.approx(90.0)


def test_the_default_statistic_of_a_relative_objective_is_the_mean() -> None:
    assert parse_objective("request_latency", "< baseline + 5 %").stat == "avg"


@pytest.mark.parametrize(("key", "text", "says"), [
    ("time_to_first_token.p99@10s", "< baseline + 10 %", "takes no window"),
    ("adj_request_latency.p90", "< baseline + 10 %", "needs the avg or a percentile"),
    ("request_latency.max", "< baseline + 10 %", "needs the avg or a percentile"),
    ("request_error_rate", "< baseline + 1 %", "needs the avg or a percentile"),
    ("request_latency.p50", "< baseline + 10 tokens", "unit 'tokens' does not fit"),
    ("request_latency.p50", "< baseline * 1.1 ms", "a factor takes no unit"),
    ("request_latency.p50", "< baseline ++ 10 %", "is not a relative objective"),
    ("request_latency.p50", "baseline + 10 %", "is not a relative objective"),
])
def test_a_bad_relative_objective_names_the_key_and_the_forms(key: str, text: str,
                                                               says: str) -> None:
    with pytest.raises(SLOError, match=says) as caught:
        parse_objective(key, text)
    assert repr(key.partition("@")[0]) in str(caught.value) or repr(key) in str(caught.value)
    if "not a relative objective" in says:
        assert "'< baseline + 10 %'" in str(caught.value)  # the allowed forms


def test_a_judged_relative_verdict_survives_the_trip_from_an_xdist_worker() -> None:
    objective = parse_objective("request_latency.p50", "< baseline + 10 %")
    from dataclasses import replace

    judged = Verdict(replace(objective, threshold=110.0), 104.0, "PASS", 300, 300,
                     (101.0, 107.0), 0.95, "difference vs baseline: exact bootstrap",
                     "baseline 0001_main: 100.00 ms")
    back = Verdict.from_dict(judged.to_dict())
    assert back.objective.relative and back.status == "PASS"
    assert back.note == judged.note and back.interval == (101.0, 107.0)


def test_regress_takes_a_dict_or_a_list_of_expressions() -> None:
    from_dict = regress_rules({"time_to_first_token.p99": "10%", "request_latency.p50": "+20 ms",
                               "request_throughput": "-5%"})
    assert [(r.key, r.margin, r.relative, r.worse) for r in from_dict] == [
        ("time_to_first_token.p99", pytest.approx(0.1), True, "up"),
        ("request_latency.p50", pytest.approx(20.0), False, "up"),
        ("request_throughput", pytest.approx(0.05), True, "down")]
    from_list = regress_rules(["time_to_first_token.p99:10%"])
    assert from_list[0].text == "time_to_first_token.p99:10%"


@pytest.mark.parametrize("value", [42, {"request_latency.p50": "ten"}, ["nonsense"]])
def test_a_bad_regress_value_is_refused_with_the_forms(value: object) -> None:
    with pytest.raises(BaselineError, match="regress") as caught:
        regress_rules(value)
    assert "time_to_first_token.p99:10%" in str(caught.value)


def test_a_marker_gate_replaces_the_sessions_gate_on_the_same_statistic() -> None:
    session = parse_rules(["request_latency.p50:10%", "request_throughput:-5%"], "ini")
    marker = parse_rules(["request_latency.p50:25%"], "marker")
    merged = merged_rules(session, marker)
    assert [r.text for r in merged] == ["request_throughput:-5%", "request_latency.p50:25%"]
