"""Servers' Prometheus /metrics scraped around a run (AIPerf's ``--server-metrics``):
``ServerMetricsCollector`` scrapes, ``ServerMetrics`` is what ``ProfileResult.server``
holds. See docs/server-metrics.md."""

from aiperf.server_metrics.parse import ExpositionError, parse_exposition
from aiperf.server_metrics.scraper import Scrape, ServerMetricsCollector, scrape_once
from aiperf.server_metrics.summary import Series, ServerMetric, ServerMetrics, summarize
from aiperf.server_metrics.urls import (
    ScrapeTarget,
    default_metrics_url,
    normalize_metrics_url,
    scrape_targets,
)

__all__ = ["ExpositionError", "Scrape", "ScrapeTarget", "Series", "ServerMetric",
           "ServerMetrics", "ServerMetricsCollector", "default_metrics_url",
           "normalize_metrics_url", "parse_exposition", "scrape_once", "scrape_targets",
           "summarize"]
