from __future__ import annotations

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
