"""A concurrency ladder and a steady-rate test against the endpoint in LLM_URL."""

import pytest


@pytest.mark.parametrize("concurrency", [1, 2, 4])
@pytest.mark.aiperf(streaming=True, request_count=24, osl=32, warmup_request_count=2)
def test_concurrency_ladder(concurrency, aiperf_result):
    assert aiperf_result.request_count == 24


@pytest.mark.aiperf(request_rate=2, arrival_pattern="poisson", request_count=10, osl=16)
def test_steady_rate():
    pass
