"""Load tests with objectives, against the built-in mock server.

Run:  pytest conftest_examples/local_mock
"""

import pytest

from pytest_aiperf import SLOBreach


@pytest.mark.aiperf(
    endpoint="chat", streaming=True,
    concurrency=8, request_count=200, warmup_request_count=8,
    isl=128, osl=32,
    slo={
        # Each verdict is judged on a 95 % confidence bound: with 200 requests a p95 has
        # one (a p99 would need 299), and an error rate "<= 2 %" can be shown (not "<= 1 %").
        "time_to_first_token.p95": "< 250 ms",
        "inter_token_latency.p50": "< 20 ms",
        "output_token_throughput": ">= 500 tokens/s",
        "request_error_rate": "<= 2 %",
    },
)
def test_chat_meets_its_slo(aiperf_result):
    # The result is there for your own checks too, in display units (ms here).
    assert aiperf_result["request_latency"].p90 < 1500


@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.aiperf(endpoint="completions", streaming=True, request_count=48, osl=16,
                    slo={"time_to_first_token.p90": "< 100 ms"})
def test_completions_ladder(concurrency, aiperf_result):
    """One run per concurrency: a parametrize argument named like a profile key sets it."""
    assert aiperf_result.config.concurrency == concurrency


@pytest.mark.aiperf(endpoint="embeddings", request_rate=100, arrival_pattern="constant",
                    request_count=50, slo={"request_latency.p90": "< 500 ms"})
def test_embeddings_at_a_fixed_rate():
    pass


@pytest.mark.xfail(reason="breaches on purpose, to show what a breach looks like",
                   raises=SLOBreach, strict=True)
@pytest.mark.aiperf(streaming=True, concurrency=4, request_count=40, osl=16,
                    slo={"time_to_first_token.p50": "< 1 ms",
                         "request_error_rate": "<= 0 %"})
def test_a_breach_looks_like_this():
    pass
