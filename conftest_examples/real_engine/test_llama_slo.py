"""The local_mock objectives, against a real engine (SmolLM2-135M on 2 CPU cores)."""

import pytest


@pytest.mark.aiperf(endpoint="chat", streaming=True, concurrency=4, request_count=16,
                    isl=32, osl=16, request_timeout_seconds=120,
                    slo={
                        "time_to_first_token.p75": "< 5 s",  # 16 requests bound a p75
                        "inter_token_latency.p50": "< 500 ms",
                        "request_error_rate": "<= 0 %",
                    })
def test_chat_meets_its_slo(aiperf_result):
    assert aiperf_result["output_sequence_length"].avg == 16


@pytest.mark.aiperf(endpoint="completions", streaming=True, concurrency=2, request_count=8,
                    isl=32, osl=16, request_timeout_seconds=120,
                    slo={"output_token_throughput": ">= 5 tokens/s"})
def test_completions_throughput():
    pass
