from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.common import codec
from aiperf.common.codec import (
    Credit,
    CreditBatch,
    ErrorInfo,
    Lease,
    LeaseReport,
    RawBatch,
    RawRecord,
    ReturnBatch,
    WorkerHello,
)


def test_messages_to_workers_round_trip_as_a_tagged_union() -> None:
    batch = CreditBatch(7, [Credit(1, codec.PROFILING, 3, 123), Credit(2, codec.WARMUP, 0, 9)])
    lease = Lease(7, codec.PROFILING, 100, 32, 8, 0)
    for message in (batch, lease):
        assert codec.to_worker_decoder.decode(codec.encode(message)) == message


def test_messages_from_workers_round_trip_as_a_tagged_union() -> None:
    for message in (WorkerHello("worker_0"), LeaseReport(7, 100, 31, True),
                    ReturnBatch(7, [1, 2, 3])):
        assert codec.from_worker_decoder.decode(codec.encode(message)) == message


def test_raw_records_keep_bytes_and_errors() -> None:
    record = RawRecord(5, 1, "worker_0", 2, 10, 11, 12, 13, 14, 200,
                       [(15, b'{"a": 1}'), (16, b"[DONE]")], ErrorInfo(500, "HTTP", "boom"))
    decoded = codec.raw_decoder.decode(codec.encode(RawBatch(1, [record])))
    assert decoded.records[0] == record


def test_run_number_is_stable_and_distinguishes_runs() -> None:
    assert codec.run_number("abc") == codec.run_number("abc")
    assert codec.run_number("abc") != codec.run_number("abd")


def test_records_carry_phases_reasoning_and_cancellations_across_the_wire() -> None:
    raw = RawRecord(5, 1, "worker_0", 2, 10, 11, 12, 13, 14, 200, [(15, b"{}")],
                    codec.cancellation("request timeout: no complete response within 1s"),
                    sent_ns=12, blocked_ns=3, dns_ns=1, connecting_ns=2, reused=0)
    assert codec.raw_decoder.decode(codec.encode(RawBatch(1, [raw]))).records[0] == raw
    metric = codec.MetricRecord(5, 1, "w", 10, 11, 12, 14, 3, 1, 4, 7, 15, [1], ttfo_ns=9,
                                reasoning_tokens=10, http_blocked_ns=3, http_dns_ns=1,
                                http_connecting_ns=2, http_sending_ns=1, http_waiting_ns=2,
                                http_receiving_ns=1, http_reused=0)
    decoded = codec.metric_decoder.decode(codec.encode(codec.MetricBatch(1, [metric])))
    assert decoded.records[0] == metric
    assert codec.is_cancellation(raw.error) and raw.error is not None
    assert (raw.error.code, raw.error.type) == (499, "RequestCancellationError")
    assert not codec.is_cancellation(ErrorInfo(500, "Internal Server Error", "x"))


def test_records_of_the_old_shape_still_decode_with_defaults() -> None:
    # A record without the newer trailing fields (an older peer) decodes with defaults.
    old = [5, 1, "w", 10, 11, 12, 14, 3, 1, 4, 7, 15, [1], False, None, False]
    record = codec.msgspec.msgpack.decode(codec.encode(old), type=codec.MetricRecord)
    assert (record.ttfo_ns, record.reasoning_tokens, record.http_reused) == (-1, -1, -1)


_reads = st.lists(st.tuples(st.integers(0, 2**62), st.binary(max_size=3 * codec.DETACH_BYTES)),
                  max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(_reads, max_size=4))
def test_large_reads_travel_as_frames_of_their_own_and_come_back_in_place(
    records_reads: list[list[tuple[int, bytes]]],
) -> None:
    def batch() -> RawBatch:
        return RawBatch(3, [RawRecord(i, 1, "w", 0, 1, 2, 3, 4, 5, 200, list(reads))
                            for i, reads in enumerate(records_reads)])

    frames = codec.encode_raw_frames(batch())
    large = [data for reads in records_reads for _, data in reads
             if len(data) >= codec.DETACH_BYTES]
    assert frames[1:] == large  # each large read as it was, in order, never packed
    assert len(frames[0]) < codec.DETACH_BYTES * (1 + len(records_reads)) or not large
    assert codec.decode_raw_frames(frames) == batch()


def test_a_batch_whose_frames_do_not_match_its_detached_reads_is_refused() -> None:
    record = RawRecord(1, 1, "w", 0, 1, 2, 3, 4, 5, 200, [(6, bytes(codec.DETACH_BYTES))])
    frames = codec.encode_raw_frames(RawBatch(1, [record]))
    with pytest.raises(ValueError, match="names 1 detached reads but came with 0"):
        codec.decode_raw_frames(frames[:1])
    assert codec.decode_raw_frames([codec.encode(RawBatch(1, []))]) == RawBatch(1, [])
