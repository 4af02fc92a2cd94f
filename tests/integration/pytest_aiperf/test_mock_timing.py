"""Through the plugin, the built-in mock (the session default and the factory's) measures
what it was configured to: it runs in its own process, not on a thread of the session."""

from __future__ import annotations

import os

import pytest

from tests.harness import descendants, wait_gone

# c=16: the engine's one worker queues 16 lockstep streams on a 2-core box on top of the
# mock's time (tests/integration/mock_server/test_timing.py holds the mock to 1 ms there).
TESTS = """
import os
import pytest

TOLERANCE = {1: 1.0, 16: 3.0}


@pytest.mark.parametrize("concurrency", [1, 16])
@pytest.mark.aiperf(streaming=True, osl=16, warmup_request_count=4)
def test_default_mock(concurrency, aiperf_result):
    ttft, itl = aiperf_result["time_to_first_token"].p50, aiperf_result["inter_token_latency"].p50
    print(f"default c={concurrency}: TTFT {ttft:.2f} ITL {itl:.2f}")
    assert 10.0 - 0.1 <= ttft <= 10.0 + TOLERANCE[concurrency]
    assert abs(itl - 2.0) <= 1.0


@pytest.mark.parametrize("concurrency", [1, 16])
def test_factory_mock(concurrency, aiperf, aiperf_mock_server):
    url = aiperf_mock_server(ttft_ms=30, itl_ms=5, tokens=12)
    result = aiperf.run(url=url, streaming=True, osl=12, concurrency=concurrency,
                        request_count=max(20, 2 * concurrency), warmup_request_count=4)
    ttft, itl = result["time_to_first_token"].p50, result["inter_token_latency"].p50
    print(f"factory c={concurrency}: TTFT {ttft:.2f} ITL {itl:.2f}")
    assert 30.0 - 0.1 <= ttft <= 30.0 + TOLERANCE[concurrency]
    assert abs(itl - 5.0) <= 1.0


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
