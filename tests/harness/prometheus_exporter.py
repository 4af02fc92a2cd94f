"""A reference Prometheus exporter: a real HTTP server on 127.0.0.1 whose /metrics values
are known by construction, so what a scraper reports can be checked against them exactly.

Scrape ``i`` (0 for the first GET /metrics) answers, as ``exposition(i)`` writes:

- ``ref:queue_depth`` (gauge): ``GAUGE[i % len(GAUGE)]``;
- ``ref:cache_usage_perc{model_name="m"}`` (gauge): ``i / 100``;
- ``ref:requests_total`` (counter, family ``ref:requests``): ``COUNTER_STEP * i + 11``;
- ``ref:latency_seconds`` (histogram, buckets 0.1, 0.5, +Inf): by scrape ``i``, ``i``
  observations of 0.05, ``i`` of 0.3 and ``i // 2`` of 2.0 (cumulative, as a server's);
- a summary and a ``_created`` sample, which scrapers leave out.

``log`` holds every scrape served: its index, and the wall clock (ns) it was served at.
``delay_s`` holds each answer back (a slow endpoint), ``status`` answers every GET with
that code instead, ``body`` replaces the exposition (malformed text). ``bearer`` protects
/metrics as a vLLM started with ``--api-key`` does: a GET without ``Authorization: Bearer
<bearer>`` is answered 401 and counted in ``refused`` (not in ``log``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiperf.results import ProfileResult

GAUGE = (50.0, 3.0, 8.0, 1.0, 6.0, 4.0, 9.0, 2.0, 7.0, 5.0)
COUNTER_STEP = 7.0
COUNTER_START = 11.0
BUCKETS = ("0.1", "0.5", "+Inf")


def gauge(i: int) -> float:
    return GAUGE[i % len(GAUGE)]


def counter(i: int) -> float:
    return COUNTER_STEP * i + COUNTER_START


def histogram(i: int) -> tuple[dict[str, float], float, float]:
    """(cumulative buckets, sum, count) at scrape ``i``."""
    slow = i // 2
    buckets = {"0.1": float(i), "0.5": float(2 * i), "+Inf": float(2 * i + slow)}
    return buckets, 0.05 * i + 0.3 * i + 2.0 * slow, float(2 * i + slow)


def exposition(i: int) -> str:
    buckets, total, count = histogram(i)
    lines = [
        "# HELP ref:queue_depth Requests waiting.",
        "# TYPE ref:queue_depth gauge",
        f"ref:queue_depth {gauge(i)}",
        "# HELP ref:cache_usage_perc KV cache usage.",
        "# TYPE ref:cache_usage_perc gauge",
        f'ref:cache_usage_perc{{model_name="m"}} {i / 100}',
        "# HELP ref:requests_total Requests finished.",
        "# TYPE ref:requests_total counter",
        f"ref:requests_total {counter(i)}",
        "# HELP ref:latency_seconds Request latency.",
        "# TYPE ref:latency_seconds histogram",
        *(f'ref:latency_seconds_bucket{{le="{le}"}} {buckets[le]}' for le in BUCKETS),
        f"ref:latency_seconds_sum {total}",
        f"ref:latency_seconds_count {count}",
        "# TYPE ref:request_size summary",
        'ref:request_size{quantile="0.5"} 3',
        "ref:request_size_sum 30",
        "ref:request_size_count 10",
        "# TYPE ref:started_created gauge",
        "ref:started_created 1700000000",
    ]
    return "\n".join(lines) + "\n"


@dataclass
class PrometheusExporter:
    """``with PrometheusExporter() as exporter: exporter.url`` (its /metrics URL)."""

    delay_s: float = 0.0
    status: int = 200
    body: str | None = None
    bearer: str | None = field(default=None, repr=False)
    refused: int = 0
    log: list[tuple[int, int]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/metrics"

    @property
    def scrapes(self) -> int:
        with self._lock:
            return len(self.log)

    def start(self) -> PrometheusExporter:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                if exporter.delay_s:
                    # A slow endpoint; wakes early when the exporter stops, so a test
                    # never waits for its own server to finish sleeping.
                    exporter._stopping.wait(exporter.delay_s)
                if exporter.status != 200:
                    self.send_error(exporter.status)
                    return
                if (exporter.bearer is not None
                        and self.headers.get("Authorization") != f"Bearer {exporter.bearer}"):
                    with exporter._lock:
                        exporter.refused += 1
                    self.send_error(401)
                    return
                with exporter._lock:
                    i = len(exporter.log)
                    exporter.log.append((i, time.time_ns()))
                text = exporter.body if exporter.body is not None else exposition(i)
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except OSError:
                    pass  # the scraper gave up (its deadline): nothing to answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5.0)

    def __enter__(self) -> PrometheusExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def scraped_result(n: int = 5, server: bool = True,
                   url: str = "http://127.0.0.1:9/metrics") -> ProfileResult:
    """A result (10 requests, no errors) whose server metrics are the exporter's scrapes
    0..n, one a second: 0 the baseline, n the final, the others during the run."""
    from aiperf.results import ProfileResult
    from aiperf.server_metrics.parse import parse_exposition
    from aiperf.server_metrics.scraper import Scrape
    from aiperf.server_metrics.summary import summarize

    result = ProfileResult.from_dict({"run_id": "r", "metrics": {
        "request_count": {"avg": 10.0}, "error_request_count": {"avg": 0.0}}})
    if server:
        scrapes = [Scrape(url, "baseline" if i == 0 else "final" if i == n else "run",
                          i * 10**9, 1, parse_exposition(exposition(i))) for i in range(n + 1)]
        result.server = summarize([url], scrapes, 1.0)
    return result
