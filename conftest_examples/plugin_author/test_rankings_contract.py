"""The rankings plugin passes the full endpoint contract, then gets load tests of its own."""

from rankings_plugin import RankingsResponder

from pytest_aiperf.kit import EndpointContract


class TestRankingsContract(EndpointContract):
    endpoint = "example_rankings"
    responder = RankingsResponder()


def test_reranking_latency_under_load(aiperf, aiperf_mock_server):
    url = aiperf_mock_server(responders=[RankingsResponder()], latency_ms=5)
    result = aiperf.run(url=url, endpoint="example_rankings", concurrency=4, request_count=40,
                        isl=64)
    aiperf.check(result, {"request_latency.p90": "< 500 ms", "request_error_rate": "<= 0 %"})
    assert "output_sequence_length" not in result

