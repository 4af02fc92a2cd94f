"""Through the plugin, the built-in mock (the session default and the factory's) measures
what it was configured to: it runs in its own process, not on a thread of the session."""

from __future__ import annotations

import os

import pytest

from tests.harness import descendants, wait_gone

# c=1: the client's own path (uvloop, aiohttp, the worker's read) adds about 0.6 ms on this
# 2-core box (10.55-10.7 ms measured for 10, the same at the session-4 start and end), and
# up to 1.2 ms on a slower CI machine of the same kind: 1.5 ms. c=16: the engine's one
# worker queues 16 lockstep streams on top of the mock's time
# (tests/integration/mock_server/test_timing.py holds the mock itself to 1 ms, and explains).
TESTS = """
import pytest

TOLERANCE = {1: 1.5, 16: 5.0}


def best_of_three(run, ttft_ms, itl_ms, concurrency):
    # A busy machine only makes a measurement later: the best of up to three must be
    # within tolerance, and none early.
    seen = []
    for _ in range(3):
        result = run()
        seen.append((result["time_to_first_token"].p50, result["inter_token_latency"].p50))
        print(f"c={concurrency}: TTFT {seen[-1][0]:.2f} ITL {seen[-1][1]:.2f}")
        if seen[-1][0] - ttft_ms <= TOLERANCE[concurrency] and abs(seen[-1][1] - itl_ms) <= 1:
            break
    assert all(ttft >= ttft_ms - 0.1 for ttft, _ in seen)
    assert min(ttft for ttft, _ in seen) <= ttft_ms + TOLERANCE[concurrency]
    assert min(abs(itl - itl_ms) for _, itl in seen) <= 1.0


@pytest.mark.parametrize("concurrency", [1, 16])
def test_default_mock(concurrency, aiperf):
    best_of_three(lambda: aiperf.run(streaming=True, osl=16, concurrency=concurrency,
                                     request_count=max(20, 2 * concurrency),
                                     warmup_request_count=4), 10.0, 2.0, concurrency)


@pytest.mark.parametrize("concurrency", [1, 16])
def test_factory_mock(concurrency, aiperf, aiperf_mock_server):
    url = aiperf_mock_server(ttft_ms=30, itl_ms=5, tokens=12)
    best_of_three(lambda: aiperf.run(url=url, streaming=True, osl=12, concurrency=concurrency,
                                     request_count=max(20, 2 * concurrency),
                                     warmup_request_count=4), 30.0, 5.0, concurrency)


def test_the_mock_is_not_a_thread_of_this_process(aiperf_mock_server):
    import threading
    aiperf_mock_server()
    assert not [t for t in threading.enumerate() if t.name == "aiperf-mock-server"]
"""


def test_the_default_and_the_factory_mock_keep_their_configured_time(
    project: pytest.Pytester,
) -> None:
    project.makepyfile(TESTS)
    result = project.runpytest_inprocess("-s")
    result.assert_outcomes(passed=5)
    assert wait_gone(descendants(os.getpid())) == []  # both mocks stopped with the session
