"""The truths themselves, worked out by hand for the cases the issue measured wrong: a slip in
the derivation would otherwise pass or fail every path alike."""

from __future__ import annotations

import pytest

from tests.truth.cases import BY_NAME, CASES, Exact, NearZero, Reported, Time, ZeroOrAbsent


def test_the_reasoning_stream_of_the_issue() -> None:
    """First chunk at 20 ms, 10 reasoning then 5 answer tokens 10 ms apart."""
    truth = BY_NAME["reasoning_content_stream"].per_request()
    assert truth["time_to_first_token"] == Time(20)
    assert truth["time_to_first_output_token"] == Time(120)
    assert truth["inter_token_latency"] == Time(10, floor=False)
    assert truth["inter_chunk_latency"] == Time(10, floor=False)
    assert truth["time_to_second_token"] == Time(10, floor=False)
    assert truth["request_latency"] == Time(160)
    assert truth["output_sequence_length"] == Exact(15)
    assert truth["reasoning_token_count"] == Exact(10)
    assert truth["output_token_count"] == Exact(5)


def test_headers_then_a_delayed_body() -> None:
    truth = BY_NAME["headers_then_body"].per_request()
    assert truth["request_latency"] == Time(120)
    assert truth["http_req_waiting"] == Time(0)
    assert truth["http_req_receiving"] == Time(120, floor=False)
    assert "time_to_first_token" not in truth


def test_multi_token_chunks_spread_the_gap_over_every_token() -> None:
    """4 events of 4 tokens, 20 ms apart from 30 ms: latency 90, ITL (90 - 30) / 15."""
    truth = BY_NAME["multi_token_chunks"].per_request()
    assert truth["request_latency"] == Time(90)
    assert truth["inter_token_latency"] == Time(4, floor=False)
    assert truth["inter_chunk_latency"] == Time(20, floor=False)
    assert truth["output_sequence_length"] == Exact(16)


def test_a_reasoning_only_stream_has_no_first_answer_token() -> None:
    truth = BY_NAME["reasoning_only_stream"].per_request()
    assert "time_to_first_output_token" not in truth
    assert truth["output_token_count"] == ZeroOrAbsent()
    assert truth["reasoning_token_count"] == Exact(8)


def test_bodies_in_pieces_end_at_the_last_piece() -> None:
    assert BY_NAME["chunked_body"].latency_ms == 10 + 4 * 25
    assert BY_NAME["embeddings_4mb"].latency_ms == 30 + 7 * 30
    assert BY_NAME["slow_first_byte_body"].per_request()["http_req_waiting"] == Time(60)


def test_run_level_counts_scale_with_the_requests() -> None:
    truth = BY_NAME["reasoning_content_stream"].run_level(32)
    assert truth["request_count"] == Exact(32)
    assert truth["total_reasoning_tokens"] == Exact(320)
    assert truth["total_output_tokens"] == Exact(160)
    assert BY_NAME["headers_then_body"].min_duration_s(16, 32) == pytest.approx(0.24)


def test_case_names_are_unique() -> None:
    assert len(BY_NAME) == len(CASES)


def test_a_burst_of_connections_is_checked_for_presence_not_size() -> None:
    case = BY_NAME["headers_then_body"]
    assert case.per_request(1)["http_req_connecting"] == NearZero()
    assert case.per_request(16)["http_req_connecting"] == Reported()
    assert case.per_request(16)["http_req_total"] == Time(120, median=False)
    assert case.per_request(16)["http_req_waiting"] == Time(0)
