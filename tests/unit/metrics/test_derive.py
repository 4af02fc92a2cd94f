"""From raw records with known timestamps to per-request metrics."""

from __future__ import annotations

import json

import pytest

from aiperf.common.codec import PROFILING, ErrorInfo, RawRecord
from aiperf.common.config import UserConfig
from aiperf.dataset.tokenizer import BuiltinTokenizer
from aiperf.metrics.derive import RecordDeriver, _sse_events, _sse_events_incremental
from aiperf.plugin import PluginType, plugins

MS = 1_000_000


def deriver(streaming: bool = True, name: str = "chat") -> RecordDeriver:
    cls = plugins.get_class(PluginType.ENDPOINT, name)
    ep = cls(UserConfig(streaming=streaming), plugins.get_metadata(PluginType.ENDPOINT, name))
    return RecordDeriver(ep, BuiltinTokenizer(), [11])


def chunk(content: str | None, **extra: object) -> bytes:
    """One SSE event, as a network read delivers it."""
    delta = {} if content is None else {"content": content}
    return sse(json.dumps({"choices": [{"delta": delta}], **extra}).encode())


def sse(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


DONE = sse(b"[DONE]")


def raw(chunks: list[tuple[int, bytes]], **kw: object) -> RawRecord:
    base = dict(credit_id=0, phase=PROFILING, worker_id="w", conversation=0, credit_ns=0,
                start_ns=1 * MS, wall_start_ns=1, response_ns=2 * MS, end_ns=100 * MS,
                status=200, chunks=chunks)
    base.update(kw)
    return RawRecord(**base)  # type: ignore[arg-type]


def test_only_content_events_count_for_timing() -> None:
    record = deriver().derive(raw([
        (3 * MS, chunk(None)),                       # role-only opening chunk
        (11 * MS, chunk(" a")),
        (15 * MS, chunk(" b c")),                    # one chunk, two tokens
        (21 * MS, chunk("")),                        # empty delta
        (31 * MS, chunk(" d")),
        (32 * MS, sse(json.dumps({"choices": [], "usage": {"prompt_tokens": 5,
                                                           "completion_tokens": 4}}).encode())),
        (33 * MS, DONE),
    ]))
    assert record.error is None
    assert record.ttft_ns == 10 * MS
    assert record.ttst_ns == 4 * MS
    assert record.latency_ns == 32 * MS  # to the last byte (the [DONE] read)
    assert record.chunk_gaps_ns == [4 * MS, 16 * MS]
    assert (record.isl, record.osl) == (5, 4)
    assert not record.usage_mismatch


def test_tokenizer_fills_in_without_usage_and_flags_a_disagreement() -> None:
    no_usage = deriver().derive(raw([(5 * MS, chunk(" a b")), (6 * MS, DONE)]))
    assert (no_usage.isl, no_usage.osl) == (11, 2)
    disagree = deriver().derive(raw([
        (5 * MS, chunk(" a b")),
        (6 * MS, chunk(None, usage={"prompt_tokens": 1, "completion_tokens": 10})),
        (7 * MS, DONE),
    ]))
    assert disagree.osl == 10 and disagree.usage_mismatch


def test_a_stream_without_done_is_an_incomplete_stream_error() -> None:
    record = deriver().derive(raw([(5 * MS, chunk(" a"))]))
    assert record.error is not None and record.error.type == "IncompleteStream"


def test_a_malformed_chunk_is_an_invalid_response_error() -> None:
    record = deriver().derive(raw([(5 * MS, sse(b'{"choices": [')), (6 * MS, DONE)]))
    assert record.error is not None and record.error.type == "InvalidResponse"


def test_an_error_event_keeps_the_servers_message() -> None:
    record = deriver().derive(raw([(5 * MS, sse(b'{"error": {"message": "kv cache full"}}'))]))
    assert record.error == ErrorInfo(200, "ServerError", "kv cache full")


def test_an_sse_error_event_is_an_error() -> None:
    record = deriver().derive(raw([(5 * MS, chunk(" a")),
                                   (6 * MS, b"event: error\ndata: overloaded\n\n")]))
    assert record.error == ErrorInfo(200, "SSEError", "overloaded")


def test_events_split_across_reads_take_the_time_of_the_read_that_completes_them() -> None:
    whole = chunk(" a") + chunk(" b")
    record = deriver().derive(raw([(5 * MS, whole[:10]), (7 * MS, whole[10:]),
                                   (9 * MS, DONE)]))
    assert record.error is None
    assert record.ttft_ns == 6 * MS and record.chunk_gaps_ns == [0]


def test_non_streaming_latency_is_body_read_minus_start() -> None:
    body = json.dumps({"choices": [{"message": {"content": "x y z"}}],
                       "usage": {"prompt_tokens": 4, "completion_tokens": 3}}).encode()
    record = deriver(streaming=False).derive(raw([(41 * MS, body)]))
    assert record.latency_ns == 40 * MS and record.ttft_ns == -1 and record.osl == 3


def test_transport_errors_pass_through() -> None:
    error = ErrorInfo(None, "ClientConnectorError", "connection refused")
    record = deriver().derive(raw([], error=error))
    assert record.error == error and record.isl == 11


STREAMS = [
    b'data: {"a":1}\n\ndata: [DONE]\n\n',
    b': ping\n\ndata: {"a":1}\n\nevent: error\ndata: {"m":"x"}\n\ndata: [DONE]\n\n',
    b'data: {"a":\ndata: 1}\n\nevent: only\n\n\n\ndata: {"b":2}',  # no final blank line
    b"",
]


@pytest.mark.parametrize("body", STREAMS)
def test_cutting_reads_into_events_agrees_with_the_incremental_parser(body: bytes) -> None:
    for reads in ([(7, body)], [(7, body[:9]), (8, body[9:])]):
        assert _sse_events(reads) == _sse_events_incremental(reads)


# -- reasoning --------------------------------------------------------------------------


def reasoning_chunk(text: str, field: str) -> bytes:
    return sse(json.dumps({"choices": [{"delta": {field: text}}]}).encode())


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_tokens_are_tokens_and_the_first_answer_token_is_ttfo(field: str) -> None:
    # 10 thinking tokens then 5 answer tokens, 10 ms apart, the first at 20 ms (start: 1).
    chunks = [(21 * MS + 10 * MS * i, reasoning_chunk(f" t{i}", field)) for i in range(10)]
    chunks += [(121 * MS + 10 * MS * i, chunk(f" a{i}")) for i in range(5)]
    chunks.append((161 * MS, DONE))
    record = deriver().derive(raw(chunks))
    assert record.error is None
    assert record.ttft_ns == 20 * MS                  # first token of any kind
    assert record.ttfo_ns == 120 * MS                 # first answer token
    assert record.osl == 15 and record.reasoning_tokens == 10
    assert record.latency_ns == 160 * MS
    assert record.chunk_gaps_ns == [10 * MS] * 14


def test_the_servers_reasoning_count_wins_over_the_tokenizer() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 9,
             "completion_tokens_details": {"reasoning_tokens": 6}}
    record = deriver().derive(raw([
        (5 * MS, reasoning_chunk(" x y", "reasoning_content")),
        (6 * MS, chunk(" z")),
        (7 * MS, chunk(None, usage=usage)),
        (8 * MS, DONE),
    ]))
    assert (record.osl, record.reasoning_tokens) == (9, 6)


def test_a_stream_that_spent_its_whole_budget_on_reasoning_is_a_success() -> None:
    record = deriver().derive(raw([(5 * MS, reasoning_chunk(" t", "reasoning")),
                                   (6 * MS, reasoning_chunk(" u", "reasoning")), (7 * MS, DONE)]))
    assert record.error is None
    assert record.ttft_ns == 4 * MS and record.ttfo_ns == -1
    assert (record.osl, record.reasoning_tokens) == (2, 2)


def test_ttfo_is_the_first_answer_even_when_reasoning_resumes_after_it() -> None:
    record = deriver().derive(raw([(5 * MS, reasoning_chunk(" t", "reasoning")),
                                   (7 * MS, chunk(" a")),
                                   (9 * MS, reasoning_chunk(" u", "reasoning")),
                                   (11 * MS, chunk(" b")), (12 * MS, DONE)]))
    assert record.ttft_ns == 4 * MS and record.ttfo_ns == 6 * MS
    assert (record.osl, record.reasoning_tokens) == (4, 2)


def test_a_stream_without_reasoning_has_no_reasoning_count() -> None:
    record = deriver().derive(raw([(5 * MS, chunk(" a")), (6 * MS, DONE)]))
    assert record.reasoning_tokens == -1 and record.ttfo_ns == record.ttft_ns


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_non_streaming_reasoning_counts_in_the_output_length(field: str) -> None:
    body = json.dumps({"choices": [{"message": {"content": "x y", field: "p q r s"}}]}).encode()
    record = deriver(streaming=False).derive(raw([(41 * MS, body)]))
    assert record.error is None
    assert (record.osl, record.reasoning_tokens) == (6, 4)


# -- usage as servers really send it ------------------------------------------------------


@pytest.mark.parametrize(("usage", "osl"), [
    ({"prompt_tokens": "5", "completion_tokens": "7"}, 7),     # counts as strings
    ({"prompt_tokens": 5.0, "completion_tokens": 7.0}, 7),     # as floats
    ([5, 7], 2),                                               # not an object: tokenizer
    ({"completion_tokens": 10**30}, 2),                        # absurd: tokenizer
    ({"completion_tokens": -3}, 2),
    ({"completion_tokens": True}, 2),
])
def test_a_malformed_usage_never_fails_the_request(usage: object, osl: int) -> None:
    record = deriver().derive(raw([(5 * MS, chunk(" a b")), (6 * MS, chunk(None, usage=usage)),
                                   (7 * MS, DONE)]))
    assert record.error is None and record.osl == osl


# -- HTTP phases ------------------------------------------------------------------------


def test_http_phases_come_from_the_transports_timestamps_and_add_up_to_latency() -> None:
    body = json.dumps({"choices": [{"message": {"content": "x"}}]}).encode()
    record = deriver(streaming=False).derive(raw(
        [(241 * MS, body)], start_ns=1 * MS, sent_ns=2 * MS, response_ns=40 * MS,
        blocked_ns=7 * MS, dns_ns=0, connecting_ns=3 * MS, reused=0))
    assert (record.http_blocked_ns, record.http_dns_ns, record.http_connecting_ns) == (
        7 * MS, 0, 3 * MS)
    assert record.http_sending_ns == 1 * MS
    assert record.http_waiting_ns == 38 * MS
    assert record.http_receiving_ns == 201 * MS        # headers at 40, body's last byte at 241
    assert (record.http_sending_ns + record.http_waiting_ns + record.http_receiving_ns
            == record.latency_ns == 240 * MS)
    assert record.http_reused == 0


def test_without_traced_phases_none_are_reported() -> None:
    record = deriver().derive(raw([(5 * MS, chunk(" a")), (6 * MS, DONE)]))
    assert record.http_reused == -1 and record.http_sending_ns == -1


# -- secrets ----------------------------------------------------------------------------


def test_an_error_event_that_echoes_the_api_key_is_scrubbed() -> None:
    cls = plugins.get_class(PluginType.ENDPOINT, "chat")
    config = UserConfig(streaming=True, api_key="sk-secret-1234",
                        headers={"X-Api-Token": "tok-5678"})
    ep = cls(config, plugins.get_metadata(PluginType.ENDPOINT, "chat"))
    record = RecordDeriver(ep, BuiltinTokenizer(), [1]).derive(raw([
        (5 * MS, sse(b'{"error": {"message": "bad key sk-secret-1234 / tok-5678"}}'))]))
    assert record.error is not None
    assert "sk-secret" not in record.error.message and "tok-5678" not in record.error.message
    assert record.error.message == "bad key *** / ***"


def test_a_tool_call_stream_is_answer_output() -> None:
    def call(**function: str) -> bytes:
        return sse(json.dumps({"choices": [{"delta": {"tool_calls": [
            {"index": 0, "function": function}]}}]}).encode())

    record = deriver().derive(raw([
        (11 * MS, reasoning_chunk(" think", "reasoning")),
        (21 * MS, call(name="get_weather", arguments="")),
        (31 * MS, call(arguments='{"city": "Paris"}')),
        (32 * MS, DONE),
    ]))
    assert record.error is None
    assert record.ttft_ns == 10 * MS and record.ttfo_ns == 20 * MS
    assert record.reasoning_tokens == 1 and record.osl > 1


def test_a_non_streamed_tool_call_counts_its_arguments() -> None:
    body = json.dumps({"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c", "type": "function",
         "function": {"name": "f", "arguments": "x y z"}}]}}]}).encode()
    record = deriver(streaming=False).derive(raw([(41 * MS, body)]))
    assert record.error is None and record.osl == BuiltinTokenizer().count("fx y z")


def test_after_a_resend_the_phases_describe_the_answered_exchange() -> None:
    # First attempt at 1 ms died; the fresh connection was in hand at 100 ms (3 ms connect);
    # the transport put the lost 96 ms in blocked.
    body = json.dumps({"choices": [{"message": {"content": "x"}}]}).encode()
    record = deriver(streaming=False).derive(raw(
        [(150 * MS, body)], start_ns=1 * MS, resend_ns=100 * MS, sent_ns=101 * MS,
        response_ns=140 * MS, blocked_ns=96 * MS, dns_ns=0, connecting_ns=3 * MS, reused=0))
    assert record.latency_ns == 149 * MS                    # the lost time is not hidden
    assert (record.http_sending_ns, record.http_waiting_ns, record.http_receiving_ns) == (
        1 * MS, 39 * MS, 10 * MS)
    phases = (record.http_blocked_ns + record.http_dns_ns + record.http_connecting_ns
              + record.http_sending_ns + record.http_waiting_ns + record.http_receiving_ns)
    assert phases == record.latency_ns and record.http_reused == 0
