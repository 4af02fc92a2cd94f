"""A server whose /metrics wants the endpoint's key (vLLM with --api-key): the default
scrape carries it, a metrics URL elsewhere never sees it, and no output quotes it."""

from __future__ import annotations

import json
import time

from aiperf.common.config import UserConfig
from aiperf.server_metrics import ServerMetricsCollector, scrape_targets
from tests.harness.prometheus_exporter import PrometheusExporter, gauge

KEY = "sk-scrape-auth-7c1e"


def _base(url: str) -> str:
    return url.removesuffix("/metrics")


def test_the_default_scrape_authenticates_as_the_endpoint() -> None:
    with PrometheusExporter(bearer=KEY) as exporter:
        config = UserConfig(url=_base(exporter.url) + "/v1", api_key=KEY,
                            server_metrics=True, server_metrics_interval=0.05)
        collector = ServerMetricsCollector(scrape_targets(config),
                                           config.server_metrics_interval).start()
        time.sleep(0.2)
        collector.stop()
        served, refused = list(exporter.log), exporter.refused
    scrapes = collector.scrapes
    assert refused == 0 and len(scrapes) == len(served) >= 3
    assert all(s.ok for s in scrapes)
    assert scrapes[0].snapshot["ref:queue_depth"].values[()] == gauge(0)  # type: ignore[index]


def test_another_servers_metrics_url_never_sees_the_key() -> None:
    with PrometheusExporter(bearer=KEY) as endpoint, PrometheusExporter(bearer=KEY) as other:
        config = UserConfig(url=_base(endpoint.url), api_key=KEY,
                            server_metrics=[endpoint.url, other.url])
        collector = ServerMetricsCollector(scrape_targets(config), 0.05).start()
        collector.stop()
        summary = collector.summary()
    by_url = {url: [s for s in collector.scrapes if s.url == url]
              for url in (endpoint.url, other.url)}
    assert all(s.ok for s in by_url[endpoint.url])
    assert [s.error for s in by_url[other.url]] == ["HTTP 401 Unauthorized"] * 2
    assert other.refused == 2 and not other.log
    shown = (json.dumps(summary.to_export_dict(), default=str) + repr(summary)
             + repr(collector) + repr(collector.scrapes))
    assert KEY not in shown
