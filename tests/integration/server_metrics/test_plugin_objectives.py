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
    """)
    result = pytester.runpytest_inprocess("--aiperf-artifacts", "out")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "server.ref:requests_total.total*no interval*< 1*FAIL*",
        "test_within *PASS",
    ])
    summary = json.loads((pytester.path / "out" / "summary.json").read_text())
    verdicts = {v["objective"]: v for t in summary["load_tests"] for v in t["objectives"]}
    within = verdicts["server.ref:queue_depth.max"]
    assert within["verdict"] == "PASS" and within["measured"] <= 50
    assert within["method"] == "server metric (point, no interval)"
    assert verdicts["server.ref:requests_total.total"]["measured"] >= 7


def test_a_name_the_reachable_server_lacks_is_refused_at_collection(
        pytester: pytest.Pytester, exporter: PrometheusExporter) -> None:
    # The issue: unknown names refused at collection when the endpoint is reachable (no
    # load sent), a warning when it is not.
    pytester.makeini(INI)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.aiperf(request_count=2, server_metrics=[{exporter.url!r}],
                            slo={{"server.ref:queue_dept.max": "< 1e9"}})
        def test_typo():
            pass
    """)
    served = len(exporter.log)
    result = pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*server.ref:queue_dept.max*no metric 'ref:queue_dept' "
                                 "at http://127.0.0.1:*did you mean 'ref:queue_depth'*"])
    # at most one scrape (a URL list is scraped once per process), and no run's
    assert len(exporter.log) <= served + 1


def test_an_unreachable_server_is_a_warning_at_collection_and_the_run_fails_the_name(
        pytester: pytest.Pytester) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"
    pytester.makeini(INI)
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.aiperf(request_count=2, server_metrics=[{closed!r}],
                            slo={{"server.ref:not_there.max": "< 1e9"}})
        def test_missing():
            pass
    """)
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*server.ref:not_there.max: no server metric 'ref:not_there': no scrape succeeded*",
        "*server metric objectives (server.ref:not_there.max) not checked at collection*",
    ])


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
