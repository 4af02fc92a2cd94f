"""The record path's queues in sketch mode: bounded in bytes through the high-water marks
(``comms.record_queue_hwm``), and a sender's lowered HWM binds a connection made already."""

from __future__ import annotations

import tempfile

import zmq
from hypothesis import given
from hypothesis import strategies as st

from aiperf.common.comms import (
    SKETCH_BATCH_BYTES,
    SKETCH_QUEUE_BYTES,
    ServiceComms,
    make_socket,
    record_queue_hwm,
    set_hwm,
)
from aiperf.common.config import ServiceConfig


def test_exact_mode_keeps_record_hwm_and_zero_stays_unbounded() -> None:
    assert record_queue_hwm(128, False, peers=4) == 128
    assert record_queue_hwm(0, True, peers=4) == 0
    assert record_queue_hwm(128, True) == SKETCH_QUEUE_BYTES // SKETCH_BATCH_BYTES


@given(st.integers(1, 10_000), st.integers(1, 512))
def test_a_bounded_socket_holds_at_most_its_budget(record_hwm: int, peers: int) -> None:
    hwm = record_queue_hwm(record_hwm, True, peers)
    assert 1 <= hwm <= record_hwm
    # Every connection keeps at least one batch: past budget / batch peers, one each.
    assert hwm * peers * SKETCH_BATCH_BYTES <= max(SKETCH_QUEUE_BYTES,
                                                   peers * SKETCH_BATCH_BYTES)


def test_a_record_socket_takes_its_own_hwm() -> None:
    with tempfile.TemporaryDirectory() as run_dir:
        config = ServiceConfig(run_dir=run_dir, record_hwm=128)
        comms = ServiceComms("record_processor_0", config.address, record_hwm=128)
        try:
            raw = comms.socket(zmq.PULL, "raw_records", bind=True, index=0, hwm=7)
            credits = comms.socket(zmq.DEALER, "credits", bind=False, identity=b"w", hwm=7)
            assert raw.getsockopt(zmq.RCVHWM) == 7
            assert credits.getsockopt(zmq.RCVHWM) == 0  # off the record path: unbounded
        finally:
            comms.close()


def _sends_until_full(push: zmq.Socket[bytes], payload: bytes, limit: int) -> int:
    sent = 0
    while sent < limit:
        try:
            push.send(payload, zmq.NOBLOCK)
        except zmq.Again:
            break
        sent += 1
    return sent


def test_a_senders_lowered_hwm_binds_its_existing_connection() -> None:
    """What a worker's per-run resize relies on: it connected at start-up with
    ``record_hwm``, and a sketch run lowers the HWM on that connection."""
    with tempfile.TemporaryDirectory() as run_dir:
        context = zmq.Context()
        address = f"ipc://{run_dir}/r.sock"
        pull = make_socket(context, zmq.PULL, address, bind=True, hwm=1)
        push = make_socket(context, zmq.PUSH, address, bind=False, hwm=1000)
        payload = b"x" * 100_000  # past the kernel's socket buffers in a few messages
        try:
            assert push.poll(5000, zmq.POLLOUT)  # connected
            set_hwm(push, 4)
            sent = _sends_until_full(push, payload, 1000)
            # 4 queued here, 1 at the receiver, what the kernel's buffers take (a few
            # 100 KB messages): far below the 1000 the connection was made with.
            assert 4 <= sent < 40, sent
            received = 0
            while pull.poll(200):
                pull.recv()
                received += 1
            assert received == sent  # lowered, nothing accepted was lost
        finally:
            push.close(0)
            pull.close(0)
            context.term()
