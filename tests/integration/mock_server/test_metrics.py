"""The mock server's Prometheus ``/metrics``: real HTTP, read back with prometheus_client's
own parser, and scraped by ``aiperf profile --server-metrics`` around a real run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from aiperf.mock_server import MockServerConfig, MockServerProcess, MockServerThread
from tests.integration.mock_server.test_server import post


def scrape(url: str) -> dict[str, tuple[str, str, float]]:
    """Each family's (type, help, value) by family name."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {f.name: (f.type, f.documentation, f.samples[0].value)
            for f in text_string_to_metric_families(text)}


def test_metrics_count_requests_answers_in_flight_and_tokens() -> None:
    with MockServerThread(tokens=5, ttft_ms=1500) as server:
        families = scrape(server.url)
        assert {name: kind for name, (kind, _, _) in families.items()} == {
            "mock_requests": "counter", "mock_requests_in_flight": "gauge",
            "mock_generated_tokens": "counter"}
        assert all(help_text for _, help_text, _ in families.values())
        assert [v for _, _, v in families.values()] == [0, 0, 0]
        # A stream held 1.5 s before its first token is in flight while it waits.
        answer = threading.Thread(target=post, args=(server.url + "/v1/chat/completions", {
            "messages": [{"role": "user", "content": "a"}], "stream": True}))
        answer.start()
        during = {}
        for _ in range(100):  # until the server has taken the request (a deadline: 100 polls)
            during = scrape(server.url)
            if during["mock_requests"][2]:
                break
            threading.Event().wait(0.01)
        assert during["mock_requests"][2] == 1 and during["mock_requests_in_flight"][2] == 1
        answer.join(timeout=15)
        assert not answer.is_alive()
        post(server.url + "/v1/completions", {"prompt": "b", "max_tokens": 3})
        after = scrape(server.url)
    assert after["mock_requests"][2] == 2 and after["mock_requests_in_flight"][2] == 0
    assert after["mock_generated_tokens"][2] == 5 + 3


def test_server_metrics_against_the_mock_show_the_requests_it_served(tmp_path: Path) -> None:
    out = tmp_path / "art"
    # A fresh server (its counters start at 0) failing some requests: they are served too.
    # 40 ms a request, two at a time: the run lasts about 0.5 s, so several of the 0.1 s
    # scrapes fall inside it.
    config = MockServerConfig(ttft_ms=40, tokens=4, error_rate=0.2, seed=3)
    with MockServerProcess(config) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "aiperf", "profile", "-u", server.url, "-m", "mock-model",
             "--streaming", "--concurrency", "2", "--request-count", "30", "--osl", "4",
             "--server-metrics", "--server-metrics-interval", "0.1",
             "--output-artifact-dir", str(out)],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        served = scrape(server.url)["mock_requests"][2]
    summary = json.loads((out / "profile_export_aiperf.json").read_text())
    errors = summary.get("error_request_count", {}).get("avg", 0)
    assert errors > 0 and summary["request_count"]["avg"] + errors == 30 == served
    exported = json.loads((out / "server_metrics_export.json").read_text())["metrics"]
    [series] = exported["mock_requests"]["series"]
    assert exported["mock_requests"]["type"] == "counter"
    assert series["stats"]["total"] == served  # the run's delta: every request it sent
    [tokens] = exported["mock_generated_tokens"]["series"]
    assert tokens["stats"]["total"] == summary["total_osl"]["avg"]  # successful answers' tokens
