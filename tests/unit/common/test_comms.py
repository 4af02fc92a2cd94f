from __future__ import annotations

import tempfile

import zmq

from aiperf.common.comms import ServiceComms, make_socket
from aiperf.common.config import ServiceConfig


def test_only_the_record_path_is_bounded() -> None:
    with tempfile.TemporaryDirectory() as run_dir:
        config = ServiceConfig(run_dir=run_dir, record_hwm=5)
        comms = ServiceComms("worker_0", config.address, record_hwm=config.record_hwm)
        try:
            raw = comms.socket(zmq.PUSH, "raw_records", bind=False, index=0)
            records = comms.socket(zmq.PULL, "records", bind=True)
            credits = comms.socket(zmq.DEALER, "credits", bind=False, identity=b"w")
            assert raw.getsockopt(zmq.SNDHWM) == records.getsockopt(zmq.RCVHWM) == 5
            # A ROUTER/DEALER channel at its HWM would drop or stall credits: unbounded.
            assert credits.getsockopt(zmq.SNDHWM) == credits.getsockopt(zmq.RCVHWM) == 0
        finally:
            comms.close()


def test_a_push_at_its_hwm_waits_instead_of_dropping() -> None:
    """What the backpressure relies on: PUSH never drops; at its HWM a send would block."""
    with tempfile.TemporaryDirectory() as run_dir:
        context = zmq.Context()
        address = f"ipc://{run_dir}/r.sock"
        pull = make_socket(context, zmq.PULL, address, bind=True, hwm=1)
        push = make_socket(context, zmq.PUSH, address, bind=False, hwm=1)
        try:
            sent = 0
            payload = b"x" * 100_000  # past the kernel's socket buffers quickly
            while sent < 1000:
                try:
                    push.send(payload, zmq.NOBLOCK)
                except zmq.Again:
                    break
                sent += 1
            assert 0 < sent < 1000  # refused at the HWM rather than queued without bound
            received = 0
            while pull.poll(200):
                pull.recv()
                received += 1
            assert received == sent  # nothing accepted was lost
        finally:
            push.close(0)
            pull.close(0)
            context.term()
