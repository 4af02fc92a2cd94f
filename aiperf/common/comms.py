"""ZeroMQ behind one seam: every socket the mesh opens is made here.

Topology (addresses from ``ServiceConfig.address``, IPC by default, TCP as an option):

    control         ROUTER (controller, bind)  <-> DEALER (each service, identity = id)
    host            ROUTER (controller, bind)  <-> DEALER (the host handle)
    bus_in/bus_out  XSUB/XPUB proxy (controller) <- PUB / -> SUB (services)
    credits         ROUTER (timing manager, bind) <-> DEALER (each worker, identity = id):
                    leases and scheduled credits out; hello, lease reports, returns back
    raw_records_i   PULL (record processor i, bind) <- PUSH (workers, connected to every i)
    records         PULL (records manager, bind) <- PUSH (record processors)

zmq errors and undecodable frames surface as ``CommunicationError`` (an ``MeshError``).

High-water marks. The record path (``raw_records_i`` and ``records``) is bounded by
``ServiceConfig.record_hwm`` messages at each end: a record processor that falls behind
fills its PULL queue, then its sender's PUSH queue, and then the sender's send blocks
(PUSH never drops a message at its HWM; it waits for room). That is the backpressure: a
worker whose records cannot leave starts no new request until they can, rather than the
processor's memory growing without bound; no record is lost, so the credit invariant
holds. No cycle of waits exists on that path (processors never wait on workers, the
records manager never waits on processors), so a blocked send always ends once the
consumer catches up. Every other socket keeps no HWM (0, unbounded): ROUTER sockets (the
control and credit channels) drop what exceeds an HWM instead of blocking, and their
traffic is bounded by the run's own structure (leases in hand, commands awaiting acks).

Keys. With ``MeshKeys`` (meshes reachable over the network: the ray and external
backends), every socket speaks CURVE: binding sockets as the server, connecting ones as
clients, and each context with a binding socket runs a gatekeeper (``curve.Gatekeeper``)
that admits only the mesh's client key and logs refusals on ``aiperf.security``. Keyed TCP
sockets also send ZMTP heartbeats, so a dead peer is dropped. Such a context must be ended
with ``terminate``. Without keys (the local mesh) nothing of this happens.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import zmq
import zmq.asyncio

from aiperf.common.curve import (
    MeshKeys,
    apply_heartbeats,
    apply_keys,
    ensure_gatekeeper,
    release_gatekeeper,
)
from aiperf.common.messages import Message, decode_message
from aiperf.errors import MeshError

# Short reconnect interval: services start before the controller binds, and the default
# 100 ms retry would show up directly in mesh start-up time.
RECONNECT_IVL_MS = 5
LINGER_MS = 50  # long enough to deliver a last error report to a live peer
# A service dying of an error waits longer for its report: on a busy box its connection to
# the controller may not even be up 50 ms after start, and the report is the only place
# the cause is named. Bounded, so a dead controller costs the exit at most this.
FATAL_LINGER_MS = 2000
RECORD_PATH = frozenset({"raw_records", "records"})
# Sketch mode's record path is bounded in bytes, not only in messages: a run of any length
# at any rate must keep its memory flat, and an HWM counts messages, so ``record_hwm``
# (128) batches of 0.3-0.9 MB sat at each end when the processor fell behind (stalled:
# worker +30 MiB, processor +25 MiB at 16 tokens a response, +180 MiB each at 256;
# benchmarks/backpressure.py --stall). In sketch mode a worker's batch holds at most about
# ``sketch_batch_bytes`` (a record more at most), and a batch's metrics are smaller than
# its raw records, so each queue of ``record_hwm`` batches holds about SKETCH_QUEUE_BYTES
# whatever the record size, while a queue of small batches (a low rate) still absorbs as
# many seconds of a niced processor's lag as before. Exact mode keeps 1 MiB batches: its
# runs are bounded anyway, and a deep queue lets a short run leave parsing for its end.
SKETCH_QUEUE_BYTES = 8 << 20
SKETCH_BATCH_MIN_BYTES = 16 << 10  # smaller batches cost more per record than they save
RECORD_BATCH_MAX_BYTES = 1 << 20


def sketch_batch_bytes(record_hwm: int) -> int:
    """The most a worker packs into one record batch in sketch mode: SKETCH_QUEUE_BYTES over
    the ``record_hwm`` batches a queue holds (unbounded queues, 0: the exact-mode size)."""
    if record_hwm <= 0:
        return RECORD_BATCH_MAX_BYTES
    return min(RECORD_BATCH_MAX_BYTES,
               max(SKETCH_BATCH_MIN_BYTES, SKETCH_QUEUE_BYTES // record_hwm))


logger = logging.getLogger(__name__)
GATEKEEPER_JOIN_TIMEOUT = 2.0  # its thread leaves on ETERM at once; this only bounds a bug


class CommunicationError(MeshError):
    """A socket failed, or a message could not be decoded."""


def make_socket(
    context: zmq.asyncio.Context | zmq.Context, kind: int, address: str, *, bind: bool,
    identity: bytes | None = None, hwm: int = 0, keys: MeshKeys | None = None,
) -> Any:
    sock = context.socket(kind)
    sock.setsockopt(zmq.LINGER, LINGER_MS)
    sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    try:
        if keys is not None:
            _secure(context, sock, address, keys, bind=bind)
        if bind:
            sock.bind(address)
        else:
            sock.connect(address)
    except (zmq.ZMQError, ValueError) as exc:
        sock.close(0)
        verb = "bind" if bind else "connect"
        raise CommunicationError(f"cannot {verb} {address}: {exc}") from exc
    return sock


def _secure(context: zmq.asyncio.Context | zmq.Context, sock: Any, address: str,
            keys: MeshKeys, *, bind: bool) -> None:
    apply_keys(sock, keys, server=bind)
    if address.startswith("tcp://"):
        apply_heartbeats(sock)
    if bind:
        # Before the bind: the first handshake must already find the gatekeeper.
        ensure_gatekeeper(context, keys).watch(sock)


def terminate(context: zmq.asyncio.Context | zmq.Context) -> None:
    """Term ``context`` (after its sockets are closed) and end its gatekeeper, if any.
    Use this instead of ``context.term()`` for every context that may bind keyed sockets."""
    keeper = release_gatekeeper(context)
    context.term()  # the gatekeeper's poll raises ETERM, it closes its sockets and leaves
    if keeper is not None and not keeper.join(GATEKEEPER_JOIN_TIMEOUT):
        logger.warning("the gatekeeper thread did not end with its context")


def decode(frames: list[bytes]) -> Message:
    try:
        return decode_message(frames)
    except Exception as exc:
        raise CommunicationError(f"undecodable control message {frames[:1]!r}: {exc}") from exc


class BusProxy:
    """The XSUB/XPUB forwarder of the message bus, on a thread of the controller."""

    def __init__(self, in_address: str, out_address: str, keys: MeshKeys | None = None) -> None:
        self._context = zmq.Context()
        self._frontend = make_socket(self._context, zmq.XSUB, in_address, bind=True, keys=keys)
        self._backend = make_socket(self._context, zmq.XPUB, out_address, bind=True, keys=keys)
        self._control_address = f"inproc://bus-proxy-control-{id(self)}"
        self._control = make_socket(self._context, zmq.PAIR, self._control_address, bind=True)
        self._thread = threading.Thread(target=self._run, name="aiperf-bus-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        peer = make_socket(self._context, zmq.PAIR, self._control_address, bind=False)
        try:
            zmq.proxy_steerable(self._frontend, self._backend, None, peer)
        except zmq.ZMQError:
            pass
        finally:
            peer.close(0)

    def stop(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._control.send(b"TERMINATE")
        self._thread.join(timeout=1.0)
        for sock in (self._frontend, self._backend, self._control):
            sock.close(0)
        terminate(self._context)


def sync_twin(sock: Any) -> zmq.Socket[Any]:
    """A blocking-API socket sharing ``sock``'s underlying zmq socket. Skipping the asyncio
    future saves microseconds per send; a send blocks only when the socket's HWM is
    reached (the record path's backpressure: see the module docstring). Only for send-only
    sockets, from the event loop's thread: on a socket that is also received from
    asynchronously, a send through the twin can swallow the edge-triggered wake-up the
    asyncio side waits for, and its receive loop stalls."""
    return zmq.Socket.shadow(sock.underlying)


class ServiceComms:
    """The sockets one service needs to talk to the controller and the bus."""

    def __init__(self, service_id: str, address: Any, record_hwm: int = 0,
                 keys: MeshKeys | None = None) -> None:
        self.context = zmq.asyncio.Context()
        self.service_id = service_id
        self._address = address
        self._record_hwm = record_hwm
        self._keys = keys
        self.control = make_socket(
            self.context, zmq.DEALER, address("control"), bind=False,
            identity=service_id.encode(), keys=keys,
        )
        self.bus_pub = make_socket(self.context, zmq.PUB, address("bus_in"), bind=False,
                                   keys=keys)
        self.bus_sub = make_socket(self.context, zmq.SUB, address("bus_out"), bind=False,
                                   keys=keys)
        self._extra: list[Any] = []

    def subscribe(self, topic: str) -> None:
        self.bus_sub.setsockopt(zmq.SUBSCRIBE, topic.encode())

    async def send_control(self, message: Message) -> None:
        await self.control.send_multipart(message.encode())

    async def publish(self, message: Message) -> None:
        await self.bus_pub.send_multipart(message.encode())

    def socket(self, kind: int, name: str, *, bind: bool, index: int | None = None,
               identity: bytes | None = None) -> Any:
        hwm = self._record_hwm if name in RECORD_PATH else 0
        sock = make_socket(self.context, kind, self._address(name, index), bind=bind,
                           identity=identity, hwm=hwm, keys=self._keys)
        self._extra.append(sock)
        return sock

    def close(self, linger_ms: int = LINGER_MS) -> None:
        for sock in (*self._extra, self.control, self.bus_pub, self.bus_sub):
            sock.close(linger_ms)
        terminate(self.context)
