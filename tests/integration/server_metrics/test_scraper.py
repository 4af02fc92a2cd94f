"""The collector against real HTTP endpoints on 127.0.0.1: every scrape is the exporter's
answer, failures of every kind are recorded and never raise or hang."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from aiperf.server_metrics import ServerMetricsCollector, scrape_once
from aiperf.server_metrics.summary import summarize
from pytest_aiperf.slo import SLOError, check_server_metric_names, parse_objectives
from tests.harness.prometheus_exporter import PrometheusExporter, counter, gauge


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_scrape_is_the_exporters_answer_in_order() -> None:
    with PrometheusExporter() as exporter:
        collector = ServerMetricsCollector([exporter.url], interval=0.05).start()
        time.sleep(0.4)
        collector.stop()
        served = list(exporter.log)
    scrapes = collector.scrapes
    phases = [s.phase for s in scrapes]
    assert phases[0] == "baseline" and set(phases[1:-1]) == {"run"} and phases[-1] == "final"
    assert all(s.ok for s in scrapes)
    # nothing lost, nothing invented: the i-th scrape saw the exporter's i-th answer
    assert len(scrapes) == len(served) >= 4
    seen = [s.snapshot["ref:queue_depth"].values[()] for s in scrapes]  # type: ignore[index]
    assert seen == [gauge(i) for i, _ in served]
    server = summarize(collector.urls, scrapes, 0.05)
    assert server["ref:requests"].total == counter(len(served) - 1) - counter(0)


@pytest.mark.parametrize(("exporter", "error"), [
    (PrometheusExporter(status=503), "HTTP 503"),
    (PrometheusExporter(body="<html>not metrics</html>"), "not Prometheus text"),
    (PrometheusExporter(delay_s=30.0), "timed out after 0.3 s"),
])
def test_a_failing_endpoint_is_recorded_and_the_run_goes_on(
        exporter: PrometheusExporter, error: str) -> None:
    with exporter:
        started = time.monotonic()
        collector = ServerMetricsCollector([exporter.url], interval=0.1, timeout=0.3).start()
        collector.stop()
        took = time.monotonic() - started
    # baseline + final, each within its deadline (with room for a loaded machine)
    assert took < 3 * 0.3 + 2.0
    assert all(s.error is not None and error in s.error for s in collector.scrapes)
    server = collector.summary()
    assert len(server) == 0 and server.endpoints_successful == []
    assert error in server.missing("ref:queue_depth")


def test_an_unreachable_endpoint_is_an_error_not_an_exception() -> None:
    scrape = scrape_once(f"http://127.0.0.1:{_closed_port()}/metrics", "baseline", 1.0)
    assert not scrape.ok and "ConnectionRefusedError" in (scrape.error or "")


def test_one_slow_endpoint_does_not_hold_back_another() -> None:
    with PrometheusExporter() as fast, PrometheusExporter(delay_s=30.0) as slow:
        collector = ServerMetricsCollector([fast.url, slow.url], interval=0.05,
                                           timeout=0.5).start()
        time.sleep(0.6)
        collector.stop()
    server = collector.summary()
    assert server.endpoints_successful == [fast.url]
    assert server.endpoints[fast.url].total_fetches >= 6  # not one per slow timeout


def test_names_are_checked_against_a_reachable_endpoint() -> None:
    from aiperf.common.config import UserConfig

    with PrometheusExporter() as exporter:
        config = UserConfig.build(server_metrics=[exporter.url])
        known = parse_objectives({"server.ref:queue_depth.max": "< 1",
                                  "server.ref:requests_total.total": "< 1"})
        assert check_server_metric_names(known, config) == []
        with pytest.raises(SLOError, match="did you mean 'ref:queue_depth'"):
            check_server_metric_names(parse_objectives({"server.ref:queue_dept.max": "< 1"}),
                                      config)
        with pytest.raises(SLOError, match="is a gauge, which has no statistic 'rate'"):
            check_server_metric_names(parse_objectives({"server.ref:queue_depth.rate": "< 1"}),
                                      config)
    unreachable = UserConfig.build(server_metrics=[f"http://127.0.0.1:{_closed_port()}"])
    warnings = check_server_metric_names(parse_objectives({"server.x.max": "< 1"}),
                                         unreachable)
    assert len(warnings) == 1 and "not checked at collection" in warnings[0]


class _Dribbler:
    """A raw TCP endpoint on 127.0.0.1 that answers a status line, then one header byte
    every ``gap`` seconds, never ending its headers: each read is quick, the whole is not."""

    def __init__(self, gap: float = 0.1) -> None:
        self.gap = gap
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/metrics"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    while not self._stop.wait(self.gap):
                        conn.sendall(b"a")
                except OSError:  # the client gave up: the next one
                    continue

    def __enter__(self) -> _Dribbler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def test_headers_that_never_end_are_cut_at_the_scrape_deadline() -> None:
    # A socket timeout bounds each read, not the whole: the deadline must cover the headers.
    with _Dribbler() as endpoint:
        started = time.monotonic()
        scrape = scrape_once(endpoint.url, "run", 0.5)
        took = time.monotonic() - started
    assert not scrape.ok and scrape.error == "timed out after 0.5 s"
    assert took < 0.5 + 2.0  # the deadline, with room for a loaded machine


def test_a_url_password_is_not_in_the_scraping_threads_names() -> None:
    # Thread names show in reprs, faulthandler dumps and pytest's thread-exception warnings.
    url = f"http://user:s3cr3t-pw@127.0.0.1:{_closed_port()}/metrics"
    collector = ServerMetricsCollector([url], interval=0.05, timeout=0.3).start()
    try:
        names = [t.name for t in threading.enumerate() if "server-metrics" in t.name]
        assert names and not any("s3cr3t-pw" in n for n in names), names
    finally:
        collector.stop()
    assert all("s3cr3t-pw" not in repr(s.error) for s in collector.scrapes)


def test_an_interrupt_during_the_baseline_stops_the_scraping_threads() -> None:
    # Ctrl-C while start() waits for a slow baseline: no thread may go on scraping.
    import signal

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    with PrometheusExporter(delay_s=0.6) as slow:
        collector = ServerMetricsCollector([slow.url], interval=0.05, timeout=1.0)
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        try:
            with pytest.raises(KeyboardInterrupt):
                collector.start()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(
                t.name.startswith("aiperf-server-metrics") for t in threading.enumerate()):
            time.sleep(0.05)
        alive = [t.name for t in threading.enumerate()
                 if t.name.startswith("aiperf-server-metrics")]
    assert alive == []


def test_a_urls_credentials_are_sent_as_basic_auth() -> None:
    # As aiohttp (AIPerf's client) does with a URL's user:password.
    import base64
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    expected = "Basic " + base64.b64encode(b"scraper:p@ss word").decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.headers.get("Authorization") == expected
            body = b"# TYPE up gauge\nup 1\n" if ok else b"denied"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        allowed = scrape_once(f"http://scraper:p%40ss%20word@127.0.0.1:{port}/metrics",
                              "run", 2.0)
        refused = scrape_once(f"http://127.0.0.1:{port}/metrics", "run", 2.0)
    finally:
        server.shutdown()
        server.server_close()
    assert allowed.ok and allowed.snapshot is not None and "up" in allowed.snapshot
    assert not refused.ok and refused.error == "HTTP 401 Unauthorized"
