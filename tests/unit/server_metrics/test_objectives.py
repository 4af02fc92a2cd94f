"""server.<name>.<stat> objectives: parsed at collection, judged as the run's point value,
never a PASS on a metric that has no value; the config keys that turn scraping on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common.config import UserConfig
from aiperf.errors import ConfigError
from aiperf.results import ProfileResult
from aiperf.server_metrics.urls import default_metrics_url, normalize_metrics_url
from pytest_aiperf.judge import SERVER_METHOD, judge_runs
from pytest_aiperf.slo import SLOError, Verdict, check_applicable, parse_objectives
from tests.harness.prometheus_exporter import GAUGE, counter
from tests.harness.prometheus_exporter import scraped_result as result_with_server

URL = "http://127.0.0.1:9/metrics"


def verdicts(slo: dict[str, str], result: ProfileResult) -> list[Verdict]:
    return judge_runs(parse_objectives(slo), [result], None, False, 0.95)


def test_the_issues_objectives_parse() -> None:
    a, b = parse_objectives({"server.vllm:gpu_cache_usage_perc.max": "< 0.9",
                             "server.llamacpp:requests_processing.max": "<= 4"})
    assert a.server and a.server_name == "vllm:gpu_cache_usage_perc" and a.stat == "max"
    assert (a.op, a.threshold) == ("<", 0.9)
    assert b.server_name == "llamacpp:requests_processing" and (b.op, b.threshold) == ("<=", 4)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("server.9bad.max", "< 1", "not a Prometheus metric name"),
    ("server.g.p42", "< 1", "unknown statistic 'p42'"),
    ("server.g.max@10s", "< 1", "takes no window"),
    ("server.g.max", "< baseline + 10 %", "no interval to compare with a baseline"),
    ("server.g.max", "< 1 ms", "write a bare number"),
    ("server.g.max", "about 1", "is not '<op> <number>'"),
])
def test_a_bad_server_objective_is_refused_naming_the_problem(
        key: str, value: str, message: str) -> None:
    with pytest.raises(SLOError, match=message):
        parse_objectives({key: value})


def test_a_server_objective_needs_a_profile_that_scrapes() -> None:
    objectives = parse_objectives({"server.g.max": "< 1"})
    with pytest.raises(SLOError, match="add server_metrics=True"):
        check_applicable(objectives, {}, True, True)
    check_applicable(objectives, {"server_metrics": True}, True, True)
    check_applicable(objectives, {"server_metrics": []}, True, True)


def test_pass_and_fail_on_the_runs_values() -> None:
    result = result_with_server(5)
    high = max(GAUGE[1:6])
    found = verdicts({"server.ref:queue_depth.max": f"<= {high}",
                      "server.ref:queue_depth.min": "> 1",
                      "server.ref:requests_total.total": f"< {counter(5) - counter(0)}",
                      "server.ref:requests": "> 0",
                      "server.ref:latency_seconds.p90_estimate": "<= 0.5"}, result)
    assert [v.status for v in found] == ["PASS", "FAIL", "FAIL", "PASS", "PASS"]
    assert found[0].measured == high and found[0].method == SERVER_METHOD
    assert found[0].interval is None and found[0].count == 6
    assert found[3].note == "total of ref:requests"  # no statistic: a counter's total
    # the verdict survives the summary's JSON round trip
    assert Verdict.from_dict(found[0].to_dict()).status == "PASS"


def test_a_metric_without_a_value_fails_with_the_reason_never_passes() -> None:
    result = result_with_server(3)
    missing, wrong_stat = verdicts({"server.ref:queue_dept.max": "< 1e9",
                                    "server.ref:queue_depth.total": "< 1e9"}, result)
    assert missing.status == "FAIL" and missing.measured is None
    assert "did you mean 'ref:queue_depth'" in (missing.note or "")
    assert wrong_stat.status == "FAIL" and "is a gauge" in (wrong_stat.note or "")
    (off,) = verdicts({"server.ref:queue_depth.max": "< 1e9"},
                      result_with_server(server=False))
    assert off.status == "FAIL" and "not scraped" in (off.note or "")


def test_several_runs_combine_extremes_and_add_increases() -> None:
    runs = [result_with_server(3), result_with_server(5)]
    objectives = parse_objectives({"server.ref:queue_depth.max": "< 100",
                                   "server.ref:requests.total": "< 1000"})
    top, total = judge_runs(objectives, runs, None, False, 0.95)
    assert top.measured == max(GAUGE[1:6])
    assert total.measured == (counter(3) - counter(0)) + (counter(5) - counter(0))


@pytest.mark.parametrize(("given", "expected"), [
    (True, []), (False, None), (None, None),
    ("localhost:8000", ["http://localhost:8000/metrics"]),
    (["http://h:1/metrics/", "https://h:2/x"], ["http://h:1/metrics", "https://h:2/x/metrics"]),
])
def test_the_config_key_takes_a_switch_or_urls(given: object, expected: object) -> None:
    assert UserConfig.build(server_metrics=given).server_metrics == expected


def test_bad_config_values_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"server_metrics.*needs an http"):
        UserConfig.build(server_metrics=["ftp://h/metrics"])
    with pytest.raises(ConfigError, match="server_metrics_interval"):
        UserConfig.build(server_metrics_interval=0)
    assert UserConfig.build(server_metrics_interval="250ms").server_metrics_interval == 0.25


def test_the_default_url_is_the_endpoints_own_metrics_without_credentials() -> None:
    assert default_metrics_url("http://u:p@host:8000/v1") == "http://host:8000/metrics"
    assert normalize_metrics_url(" host:9 ") == "http://host:9/metrics"


def test_a_label_selector_picks_the_series_it_names() -> None:
    result = result_with_server(4)
    (objective,) = parse_objectives({'server.ref:cache_usage_perc{model_name="m"}.max': "< 1"})
    assert objective.server_name == "ref:cache_usage_perc"
    assert objective.server_labels == {"model_name": "m"}
    hit, miss = verdicts({'server.ref:cache_usage_perc{model_name="m"}.max': "<= 0.04",
                          'server.ref:cache_usage_perc{model_name="x.y"}.max': "< 1"},
                         result)
    assert hit.status == "PASS" and hit.measured == 0.04
    assert miss.status == "FAIL" and miss.measured is None
    assert 'its label sets: {model_name="m"}' in (miss.note or "")
    assert result.server is not None
    assert result.server["ref:cache_usage_perc"].select(model_name="m").max == 0.04
    with pytest.raises(SLOError, match="is not a label selector"):
        parse_objectives({"server.ref:cache_usage_perc{model_name=m}.max": "< 1"})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='abz_:{}=",.@ \\9pmx', max_size=30),
       st.text(alphabet="<>=0123456789. a%e-", max_size=12))
def test_any_server_key_parses_or_is_refused_by_name(rest: str, value: str) -> None:
    key = f"server.{rest}"
    try:
        (objective,) = parse_objectives({key: value})
    except SLOError as exc:
        assert repr(key) in str(exc)
        return
    assert objective.server and objective.key == key
    assert objective.server_name and isinstance(objective.server_labels, dict)


def _restarted_result(values: list[float]) -> ProfileResult:
    """A result whose counter ``c_total`` and histogram ``h`` took ``values`` at scrapes
    0..n (the server restarted where a value drops)."""
    from aiperf.server_metrics.parse import parse_exposition
    from aiperf.server_metrics.scraper import Scrape
    from aiperf.server_metrics.summary import summarize

    def text(v: float) -> str:
        return (f"# TYPE c_total counter\nc_total {v}\n# TYPE h histogram\n"
                f'h_bucket{{le="1"}} {v}\nh_bucket{{le="+Inf"}} {v}\nh_sum {v}\n'
                f"h_count {v}\n")

    n = len(values) - 1
    scrapes = [Scrape(URL, "baseline" if i == 0 else "final" if i == n else "run",
                      i * 10**9, 1, parse_exposition(text(v))) for i, v in enumerate(values)]
    result = result_with_server(server=False)
    result.server = summarize([URL], scrapes, 1.0)
    return result


@pytest.mark.parametrize("values", [
    [100.0, 3.0, 7.0],  # ends below the reference: the artifacts' total is 0 (AIPerf's)
    [100.0, 3.0, 120.0],  # ends above it: last - reference (20) is not the increase
])
def test_a_restart_during_the_run_never_passes_an_increase_objective(
        values: list[float]) -> None:
    # The increase across a restart is unknown: "no preemption" must not PASS on it.
    found = verdicts({"server.c_total.total": "<= 0", "server.c.rate": "< 1e9",
                      "server.h.count": "< 1e9", "server.h.sum": "<= 1e9"},
                     _restarted_result(values))
    assert [v.status for v in found] == ["FAIL"] * 4
    assert all("went down" in (v.note or "") for v in found), [v.note for v in found]
    assert all(v.measured is None for v in found)


def test_a_counter_that_only_grows_is_judged_as_before() -> None:
    (total,) = verdicts({"server.c_total.total": "<= 20"},
                        _restarted_result([100.0, 110.0, 120.0]))
    assert total.status == "PASS" and total.measured == 20.0


def test_a_gauge_never_scraped_during_the_run_fails_and_a_counter_still_counts() -> None:
    # A run shorter than the interval: only the baseline and the final scrape, after the
    # run, when the server is idle again; its gauges say nothing of the run ("cache usage
    # max < 0.9" would PASS on an idle server). A counter's delta still spans the run.
    result = result_with_server(1)
    gauge_max, total = verdicts({"server.ref:queue_depth.max": "<= 1e9",
                                 "server.ref:requests_total.total": "> 0"}, result)
    assert gauge_max.status == "FAIL" and gauge_max.measured is None
    assert "not scraped during the run" in (gauge_max.note or ""), gauge_max.note
    assert total.status == "PASS" and total.measured == counter(1) - counter(0)
    (enough,) = verdicts({"server.ref:queue_depth.max": "<= 1e9"}, result_with_server(2))
    assert enough.status == "PASS"
