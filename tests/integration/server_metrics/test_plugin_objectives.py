"""server.* objectives through a real pytest session (pytester: real mesh, mock server),
the reference exporter scraped as the server's metrics: PASS, FAIL, and a FAIL that says
why when the metric is not there."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

# Verdicts import scipy lazily; imported here first, it outlives each inline session
# (which drops the modules it imported; scipy's C extensions cannot load twice).
import scipy.special
import scipy.stats  # noqa: F401

from tests.harness.prometheus_exporter import PrometheusExporter

INI = """
[pytest]
asyncio_default_fixture_loop_scope = function
aiperf_workers = 1
aiperf_validity = warn
"""


@pytest.fixture(scope="module")
def exporter() -> Iterator[PrometheusExporter]:
    with PrometheusExporter() as running:
        yield running


def test_server_objectives_pass_and_fail_on_the_scraped_values(
        pytester: pytest.Pytester, exporter: PrometheusExporter) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(f"""
        import pytest

        PROFILE = dict(request_count=6, server_metrics=[{exporter.url!r}],
                       server_metrics_interval=0.05)

        # the gauge never exceeds 50, and the counter rises by 7 every scrape
        @pytest.mark.aiperf(**PROFILE, slo={{"server.ref:queue_depth.max": "<= 50",
                                             "server.ref:requests_total.total": ">= 7"}})
        def test_within():
            pass

        @pytest.mark.aiperf(**PROFILE, slo={{"server.ref:requests_total.total": "< 1"}})
        def test_breached():
            pass

        @pytest.mark.aiperf(**PROFILE, slo={{"server.ref:not_there.max": "< 1e9"}})
        def test_missing():
            pass
    """)
    result = pytester.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines([
        "server.ref:requests_total.total*no interval*< 1*FAIL*",
        "server.ref:not_there.max*not measured*no interval*< 1e9*FAIL*",
        "*server.ref:not_there.max: no server metric 'ref:not_there' was scraped; scraped: "
        "ref:cache_usage_perc, ref:latency_seconds, ref:queue_depth, ref:requests",
        "test_within *PASS",
    ])
    summary = json.loads((pytester.path / "out" / "summary.json").read_text())
    verdicts = {v["objective"]: v for t in summary["load_tests"] for v in t["objectives"]}
    within = verdicts["server.ref:queue_depth.max"]
    assert within["verdict"] == "PASS" and within["measured"] <= 50
    assert within["method"] == "server metric (point, no interval)"
    assert verdicts["server.ref:requests_total.total"]["measured"] >= 7
    missing = verdicts["server.ref:not_there.max"]
    assert missing["verdict"] == "FAIL" and missing["measured"] is None
    assert "no server metric 'ref:not_there' was scraped" in missing["note"]


def test_a_server_objective_without_server_metrics_is_refused_at_collection(
        pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile("""
        import pytest

        @pytest.mark.aiperf(request_count=2, slo={"server.vllm:gpu_cache_usage_perc.max": "< 0.9"})
        def test_no_scraping():
            pass
    """)
    result = pytester.runpytest_inprocess()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*needs the server's metrics: add server_metrics=True*"])
