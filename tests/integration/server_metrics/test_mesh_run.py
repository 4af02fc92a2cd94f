"""A real run through the mesh against the mock server, with the reference exporter
scraped on the side: the result's server metrics are exactly what the exporter served,
reduced by the documented rules (recomputed here from the exporter's own sequence)."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

from aiperf.exporters.server_metrics_export import export_server_metrics
from aiperf.mesh import Mesh
from aiperf.mock_server import MockServerProcess
from tests.harness.prometheus_exporter import PrometheusExporter, counter, gauge, histogram
from tests.integration.services.servers import reference_server, response

INTERVAL = 0.1


def test_a_run_reports_the_exporters_deltas_and_extremes_exactly(
        mesh: Mesh, mock_server: MockServerProcess, tmp_path: Path) -> None:
    with PrometheusExporter() as exporter:
        result = mesh.run(url=mock_server.url, concurrency=2, benchmark_duration=1.0,
                          server_metrics=[exporter.url], server_metrics_interval=INTERVAL)
        served = [i for i, _ in exporter.log]
    assert result.request_count > 0 and result.error_count == 0
    server = result.server
    assert server is not None and server.endpoints_successful == [exporter.url]
    assert not [w for w in result.warnings if w.startswith("server metrics")]

    # every scrape the exporter served is in the time series, in order
    queue = server["ref:queue_depth"]
    samples = queue.series[0].samples
    assert samples is not None
    assert list(samples.values) == [gauge(i) for i in served]
    stamps = samples.timestamps_ns
    last = served[-1]

    # the oracle: gauges over the in-run scrapes inside the profiling window and the
    # final one; counters and histograms from the last scrape before that window
    assert server.start_ns is not None and server.end_ns is not None
    window = [i for i in served[1:-1] if server.start_ns <= stamps[i] <= server.end_ns]
    window.append(last)
    assert len(window) >= 4, (len(served), window)  # a 1 s run at 0.1 s
    before = [i for i in served[:-1] if stamps[i] < stamps[window[0]]]
    ref = before[-1] if before else window[0]
    values = [gauge(i) for i in window]
    assert (queue.max, queue.min) == (max(values), min(values))
    assert queue.avg == sum(values) / len(values)
    assert server["ref:requests_total"].total == counter(last) - counter(ref)
    latency = server["ref:latency_seconds"]
    assert latency.count == histogram(last)[2] - histogram(ref)[2]
    assert latency.series[0].buckets == {
        le: round(histogram(last)[0][le] - histogram(ref)[0][le]) for le in histogram(0)[0]}

    # artifacts: AIPerf's JSON shape with the time series, and the CSV's sections
    paths = export_server_metrics(result, tmp_path)
    document = json.loads(paths["server_metrics_json"].read_text())
    assert document["metrics"]["ref:queue_depth"]["series"][0]["samples"]["values"] == list(
        samples.values)
    assert document["input_config"]["server_metrics"] == [exporter.url]
    rows = list(csv.reader(paths["server_metrics_csv"].open()))
    headers = [r for r in rows if r[:3] == ["Endpoint", "Type", "Metric"]]
    assert [h[4] for h in headers] == ["avg", "total", "count"]  # gauge, counter, histogram
    gauge_row = next(r for r in rows if r[2:3] == ["ref:queue_depth"])
    assert float(gauge_row[headers[0].index("max")]) == queue.max


async def _chat_without_metrics(head: bytes, writer: asyncio.StreamWriter) -> None:
    if head.startswith(b"GET /metrics"):
        writer.write(response(b"not found", b"404 Not Found", b"text/plain"))
    else:
        writer.write(response(b'{"choices": [{"message": {"content": "ok"}}]}'))
    await writer.drain()


def test_a_server_without_metrics_is_a_warning_and_the_run_stands(mesh: Mesh) -> None:
    # server_metrics=True: the endpoint's own /metrics, which this server does not serve
    # (the built-in mock does)
    with reference_server(_chat_without_metrics) as url:
        result = mesh.run(url=url, request_count=4, server_metrics=True)
    assert result.request_count == 4
    assert result.server is not None and len(result.server) == 0
    assert any("server metrics: no scrape succeeded" in w and "/metrics" in w
               for w in result.warnings), result.warnings


def test_a_hung_metrics_endpoint_delays_the_run_by_its_deadlines_only(
        mesh: Mesh, mock_server: MockServerProcess) -> None:
    import time

    with PrometheusExporter(delay_s=60.0) as hung:
        started = time.monotonic()
        result = mesh.run(url=mock_server.url, request_count=4, server_metrics=[hung.url],
                          server_metrics_interval=0.2)
        took = time.monotonic() - started
    assert result.request_count == 4 and result.error_count == 0
    # the baseline and the final scrape wait 1 s each (the shortest deadline), the
    # scrapes during the run overlap it; room left for a loaded machine
    assert took < 2 * 1.0 + 8.0
    assert result.server is not None and len(result.server) == 0
    assert any("timed out after 1 s" in w for w in result.warnings), result.warnings
