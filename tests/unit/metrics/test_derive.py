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
