"""Sketch mode's record batches are sized so that a queue of ``record_hwm`` of them holds
about ``SKETCH_QUEUE_BYTES`` (``comms.sketch_batch_bytes``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aiperf.common.comms import (
    RECORD_BATCH_MAX_BYTES,
    SKETCH_BATCH_MIN_BYTES,
    SKETCH_QUEUE_BYTES,
    sketch_batch_bytes,
)


def test_the_default_queue_of_128_batches_holds_the_budget() -> None:
    assert sketch_batch_bytes(128) * 128 == SKETCH_QUEUE_BYTES
    assert sketch_batch_bytes(0) == RECORD_BATCH_MAX_BYTES  # unbounded queues: no bound


@given(st.integers(1, 100_000))
def test_a_batch_is_never_larger_than_exact_modes_nor_tiny(record_hwm: int) -> None:
    size = sketch_batch_bytes(record_hwm)
    assert SKETCH_BATCH_MIN_BYTES <= size <= RECORD_BATCH_MAX_BYTES
    # Within the budget unless the floor (a batch must carry a few records) decides.
    assert size * record_hwm <= SKETCH_QUEUE_BYTES or size == SKETCH_BATCH_MIN_BYTES
