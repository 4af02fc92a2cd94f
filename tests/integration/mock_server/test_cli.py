"""``aiperf mock-server`` takes every latency key of the mock from the shell: a latency and a
slot limit really shape what it serves; a bad combination exits 2 naming the key."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

START_TIMEOUT_S = 20.0


def test_a_bad_distribution_exits_2_naming_the_key() -> None:
    done = subprocess.run([sys.executable, "-m", "aiperf", "mock-server", "--port", "0",
                           "--ttft-distribution", "lognormal", "--ttft-ms", "10",
                           "--ttft-sigma", "90"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "ttft_sigma" in done.stderr and "at most 5" in done.stderr


def test_slots_and_a_fixed_latency_from_the_shell_shape_the_answers() -> None:
    server = subprocess.Popen(
        [sys.executable, "-m", "aiperf", "mock-server", "--port", "0", "--slots", "1",
         "--latency-ms", "60", "--latency-distribution", "fixed", "--seed", "3"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "listening on URL", or EOF if it died
        assert line.startswith("listening on "), line
        url = line.split()[-1]
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})

        def ask() -> float:
            request = urllib.request.Request(f"{url}/v1/chat/completions", body.encode(),
                                             {"Content-Type": "application/json"})
            began = time.monotonic()
            with urllib.request.urlopen(request, timeout=START_TIMEOUT_S) as reply:
                assert reply.status == 200
                json.loads(reply.read())
            return (time.monotonic() - began) * 1000

        with ThreadPoolExecutor(2) as pool:
            first, second = sorted(pool.map(lambda _: ask(), range(2)))
        # One slot: the second request waits for the first (60 ms fixed each).
        assert first >= 60 - 1 and second >= 2 * 60 - 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
