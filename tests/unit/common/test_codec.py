from __future__ import annotations

from aiperf.common import codec
from aiperf.common.codec import Credit, CreditBatch, ErrorInfo, RawBatch, RawRecord


def test_credit_batches_round_trip() -> None:
    batch = CreditBatch(7, [Credit(1, codec.PROFILING, 3, 123), Credit(2, codec.WARMUP, 0, 9)])
    assert codec.credit_decoder.decode(codec.encode(batch)) == batch


def test_raw_records_keep_bytes_and_errors() -> None:
    record = RawRecord(5, 1, "worker_0", 2, 10, 11, 12, 13, 14, 200,
                       [(15, b'{"a": 1}'), (16, b"[DONE]")], ErrorInfo(500, "HTTP", "boom"))
    decoded = codec.raw_decoder.decode(codec.encode(RawBatch(1, [record])))
    assert decoded.records[0] == record


def test_run_number_is_stable_and_distinguishes_runs() -> None:
    assert codec.run_number("abc") == codec.run_number("abc")
    assert codec.run_number("abc") != codec.run_number("abd")
