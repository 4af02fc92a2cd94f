from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading

import pytest
import zmq

from aiperf.common.comms import BusProxy, ServiceComms, decode, make_socket, terminate
from aiperf.common.config import ServiceConfig
from aiperf.common.messages import CancelRequestsMessage, MessageType, RegisterMessage
from aiperf.common.net import free_tcp_ports


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


def _gatekeeper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aiperf-gatekeeper"]


def test_without_keys_a_socket_is_as_before() -> None:
    """The local mesh: no CURVE, no heartbeats, no gatekeeper."""
    (port,) = free_tcp_ports("127.0.0.1", 1)
    context = zmq.Context()
    server = make_socket(context, zmq.ROUTER, f"tcp://127.0.0.1:{port}", bind=True)
    try:
        assert server.getsockopt(zmq.MECHANISM) == zmq.NULL
        assert server.getsockopt(zmq.HEARTBEAT_IVL) == 0
        assert _gatekeeper_threads() == []
    finally:
        server.close(0)
        terminate(context)


@pytest.mark.asyncio
async def test_a_keyed_service_talks_to_a_keyed_controller_and_bus() -> None:
    config = ServiceConfig(backend="external").prepared()
    keys = config.mesh_keys
    assert keys is not None
    context = zmq.Context()
    control = make_socket(context, zmq.ROUTER, config.address("control"), bind=True, keys=keys)
    proxy = BusProxy(config.address("bus_in"), config.address("bus_out"), keys=keys)
    proxy.start()
    comms = ServiceComms("worker_0", config.address, keys=keys)
    try:
        records = comms.socket(zmq.PULL, "records", bind=True)
        for sock in (comms.control, comms.bus_pub, comms.bus_sub, records, control):
            assert sock.getsockopt(zmq.MECHANISM) == zmq.CURVE
        assert records.getsockopt(zmq.CURVE_SERVER) == 1
        # The controller, the proxy and the service's binding socket: one gatekeeper each.
        assert len(_gatekeeper_threads()) == 3

        await comms.send_control(RegisterMessage(service_id="worker_0", service_type="worker",
                                                 pid=1))
        assert control.poll(10_000)
        identity, *frames = control.recv_multipart()
        assert identity == b"worker_0"
        assert isinstance(decode(frames), RegisterMessage)

        comms.subscribe(MessageType.CANCEL_REQUESTS.value)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        received = None
        while received is None and loop.time() < deadline:
            # A subscription reaches the proxy a moment after the connect: publish again.
            await comms.publish(CancelRequestsMessage(run_id="r1"))
            with contextlib.suppress(TimeoutError):
                received = await asyncio.wait_for(comms.bus_sub.recv_multipart(), 0.05)
        assert received is not None
        assert decode(received) == CancelRequestsMessage(run_id="r1")
    finally:
        comms.close()
        proxy.stop()
        control.close(0)
        terminate(context)
        shutil.rmtree(config.run_dir, ignore_errors=True)
    assert _gatekeeper_threads() == []
