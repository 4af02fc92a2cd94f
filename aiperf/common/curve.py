"""The mesh's keys: ZeroMQ CURVE, so that only this mesh's processes can join it over TCP.

A mesh whose sockets are reachable from other machines (the Ray backend) gets one server
key pair (every binding socket) and one client key pair (every connecting socket), fresh
per mesh. A peer without the client secret cannot complete the handshake; the binding
side's ZAP handler (the ``Gatekeeper``, one per zmq context) also refuses any client key
but this mesh's. Refusals are logged on ``aiperf.security`` at WARNING, at most one line
per peer address per 10 s. Keyed TCP sockets send ZMTP heartbeats, so dead peers are
dropped. Nothing here is used by the local mesh (no keys).
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from pydantic import BaseModel, ConfigDict, SecretStr, field_serializer
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message


class MeshKeys(BaseModel):
    """Z85 CURVE keys of one mesh. The secrets are ``SecretStr`` (masked in reprs and
    errors); ``model_dump`` reveals them only with ``context={"reveal": True}``, which is
    how the host hands them to the controller and the controller to remote workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_public: str
    server_secret: SecretStr
    client_public: str
    client_secret: SecretStr

    @classmethod
    def generate(cls) -> MeshKeys:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public=server_public.decode(), server_secret=server_secret.decode(),
                   client_public=client_public.decode(), client_secret=client_secret.decode())

    @field_serializer("server_secret", "client_secret")
    def _secret(self, value: SecretStr, info: Any) -> str:
        context = info.context or {}
        return value.get_secret_value() if context.get("reveal") else str(value)


# Heartbeats on every keyed TCP connection: a peer whose host died (or froze) stops
# answering PINGs and is dropped after the timeout, instead of lingering until TCP gives up.
HEARTBEAT_IVL_MS = 500
HEARTBEAT_TIMEOUT_MS = 2000
HEARTBEAT_TTL_MS = 2000

SECURITY_LOGGER = "aiperf.security"
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by the ZAP spec (RFC 27)
REFUSAL_LOG_INTERVAL = 10.0
# The gatekeeper's thread is woken for new work and ends on ETERM; this bound on each of its
# polls is only a backstop, once a second, costing nothing measurable.
_POLL_MS = 1000
_WATCHED_EVENTS = (zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_MONITOR_STOPPED
                   | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

security_log = logging.getLogger(SECURITY_LOGGER)
_inproc_ids = itertools.count()


def apply_keys(sock: zmq.Socket[Any], keys: MeshKeys, *, server: bool) -> None:
    """Make ``sock`` speak CURVE with this mesh's keys; call before bind/connect.

    A binding socket is the CURVE server (it proves it holds the server secret); a
    connecting one is a client that knows the server's public key and proves it holds the
    mesh's client secret. Which client keys are let in is the gatekeeper's decision."""
    if server:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.server_public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.server_secret.get_secret_value().encode())
    else:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server_public.encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.client_public.encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys.client_secret.get_secret_value().encode())


def apply_heartbeats(sock: zmq.Socket[Any]) -> None:
    """ZMTP heartbeats, so that a dead TCP peer is dropped within about two seconds."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TTL_MS)


class RefusalLog:
    """At most one refusal line per peer address per ``interval`` seconds: a scanner
    hammering a port cannot flood the log. Memory is bounded too (``max_peers``)."""

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, max_peers: int = 4096) -> None:
        self._interval = interval
        self._clock = clock
        self._max_peers = max_peers
        self._last: dict[str, float] = {}

    def allow(self, peer: str) -> bool:
        now = self._clock()
        last = self._last.get(peer)
        if last is not None and now - last < self._interval:
            return False
        if last is None and len(self._last) >= self._max_peers:
            self._last = {p: t for p, t in self._last.items() if now - t < self._interval}
            if len(self._last) >= self._max_peers:
                return False  # a flood from many addresses at once: already well reported
        self._last[peer] = now
        return True

    def refuse(self, peer: str | None, why: str) -> None:
        where = peer or "an unknown address"
        if self.allow(where):
            security_log.warning("refused a peer at %s: %s (not this mesh's key)", where, why)


def _describe_protocol_error(code: int) -> str:
    if code == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "it does not speak CURVE"
    if code == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "its CURVE handshake does not decrypt (another server key or client secret)"
    return f"its handshake broke the protocol (error 0x{code:x})"


def _peer_of(fd: int) -> str | None:
    """The remote address of a socket libzmq just accepted, read through a duplicate of its
    descriptor (closing the duplicate leaves libzmq's own open). None once it is gone."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        sock = socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
    with sock:
        try:
            name = sock.getpeername()
        except OSError:
            return None
    return str(name[0]) if isinstance(name, tuple) else None


class _Watch:
    """What the gatekeeper knows about one watched socket's connections."""

    def __init__(self) -> None:
        self.peers: dict[int, str | None] = {}
        self.failed: str | None = None


class Gatekeeper:
    """The ZAP handler of one zmq context: every CURVE handshake on a binding socket of
    that context asks it, and only this mesh's client key is let in.

    It also watches the binding sockets (a socket monitor), because peers with another
    mesh's server key or without CURVE fail the handshake before ZAP is asked: those are
    logged from the monitor, with the address read from the accepted descriptor as soon as
    the event arrives: a peer that fails fast may be gone by then ("an unknown address").

    Its thread uses a shadow of the context, binds the ZAP endpoint before any socket can
    bind (so no handshake ever finds no handler: libzmq would then admit anyone with the
    server's public key), and exits when the context is terminated (ETERM), so it never
    outlives the context, whoever terms it."""

    def __init__(self, context: zmq.Context[Any], keys: MeshKeys) -> None:
        self.keys = keys
        self._allowed = keys.client_public.encode()
        self._context: zmq.Context[Any] = zmq.Context.shadow(context.underlying)
        self._log = RefusalLog()
        self._pending: deque[zmq.Socket[Any]] = deque()
        # New monitors are handed over through _pending; _waker (used under _lock, by any
        # thread) tells the gatekeeper's thread to pick them up.
        self._lock = threading.Lock()
        self._closed = False
        wake_address = f"inproc://aiperf-gatekeeper-wake-{os.getpid()}-{next(_inproc_ids)}"
        self._zap: zmq.Socket[Any] = self._context.socket(zmq.REP)
        self._wakeup: zmq.Socket[Any] = self._context.socket(zmq.PULL)
        self._waker: zmq.Socket[Any] = self._context.socket(zmq.PUSH)
        try:
            for sock in (self._zap, self._wakeup, self._waker):
                sock.setsockopt(zmq.LINGER, 0)
            self._zap.bind(ZAP_ENDPOINT)
            self._wakeup.bind(wake_address)
            self._waker.connect(wake_address)
        except zmq.ZMQError:
            for sock in (self._zap, self._wakeup, self._waker):
                sock.close(0)
            raise
        self._thread = threading.Thread(target=self._run, name="aiperf-gatekeeper", daemon=True)
        self._thread.start()

    def watch(self, sock: zmq.Socket[Any]) -> None:
        """Log the failed handshakes of ``sock`` (call before it binds)."""
        address = f"inproc://aiperf-gatekeeper-monitor-{os.getpid()}-{next(_inproc_ids)}"
        sock.monitor(address, _WATCHED_EVENTS)
        pair = self._context.socket(zmq.PAIR)
        pair.setsockopt(zmq.LINGER, 0)
        # Connected here, so the monitor's events queue up until the thread picks it up.
        pair.connect(address)
        with self._lock:
            if self._closed:
                pair.close(0)
                raise zmq.ContextTerminated()
            self._pending.append(pair)
            with contextlib.suppress(zmq.Again):  # a wake-up is already queued
                self._waker.send(b"", zmq.NOBLOCK)

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._zap, zmq.POLLIN)
        poller.register(self._wakeup, zmq.POLLIN)
        watched: dict[zmq.Socket[Any], _Watch] = {}
        try:
            while True:
                try:
                    self._serve(poller, watched)
                except zmq.ContextTerminated:
                    raise
                except Exception:
                    # Never leave the loop on a bug: with its ZAP socket closed, libzmq would
                    # admit any peer that knows the server's public key.
                    security_log.exception("the gatekeeper hit an error; it goes on")
        except zmq.ContextTerminated:
            pass
        finally:
            with self._lock:
                self._closed = True
                for sock in (*watched, *self._pending, self._waker, self._wakeup, self._zap):
                    sock.close(0)

    def _serve(self, poller: zmq.Poller, watched: dict[zmq.Socket[Any], _Watch]) -> None:
        ready = dict(poller.poll(_POLL_MS))
        if self._wakeup in ready:
            while self._wakeup.poll(0):
                self._wakeup.recv()
        while self._pending:
            pair = self._pending.popleft()
            poller.register(pair, zmq.POLLIN)
            watched[pair] = _Watch()
        if self._zap in ready:
            self._answer()
        for pair, state in list(watched.items()):
            if pair in ready and not self._on_event(pair, state):
                poller.unregister(pair)
                del watched[pair]
                pair.close(0)

    def _answer(self) -> None:
        frames = self._zap.recv_multipart()
        try:
            reply = self._decide(frames)
        except Exception:  # a malformed request must still get an answer: a refusal
            security_log.exception("gatekeeper could not judge a ZAP request")
            reply = [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"error", b"", b""]
        self._zap.send_multipart(reply)

    def _decide(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6:
            return [b"1.0", frames[1] if len(frames) > 1 else b"", b"500", b"malformed",
                    b"", b""]
        request_id, address, mechanism, credentials = frames[1], frames[3], frames[5], frames[6:]
        if mechanism == b"CURVE" and len(credentials) == 1 and len(credentials[0]) == 32:
            client_key = z85.encode(credentials[0])
            if hmac.compare_digest(client_key, self._allowed):
                return [b"1.0", request_id, b"200", b"OK", b"", b""]
            why = f"client key {client_key.decode()}"
        else:
            why = f"mechanism {mechanism.decode(errors='replace')}"
        self._log.refuse(address.decode(errors="replace") or None, why)
        return [b"1.0", request_id, b"400", b"not this mesh's key", b"", b""]

    def _on_event(self, pair: zmq.Socket[Any], state: _Watch) -> bool:
        """Handle one monitor event; False once the watched socket is gone."""
        event = parse_monitor_message(pair.recv_multipart())
        kind, value = event["event"], int(event["value"])
        if kind == zmq.EVENT_ACCEPTED:
            state.peers[value] = _peer_of(value)
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            # libzmq reports a failed handshake right before that connection's DISCONNECTED,
            # from the same I/O thread: the next DISCONNECTED names its descriptor.
            state.failed = _describe_protocol_error(value)
        elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            # A peer without CURVE often notices the mismatch first and hangs up.
            state.failed = "it hung up during the CURVE handshake"
        elif kind == zmq.EVENT_DISCONNECTED:
            peer = state.peers.pop(value, None)
            if state.failed is not None:
                self._log.refuse(peer, state.failed)
                state.failed = None
        elif kind == zmq.EVENT_MONITOR_STOPPED:
            return False
        return True


_gatekeepers: weakref.WeakKeyDictionary[Any, Gatekeeper] = weakref.WeakKeyDictionary()
_gatekeepers_lock = threading.Lock()


def ensure_gatekeeper(context: zmq.Context[Any], keys: MeshKeys) -> Gatekeeper:
    """The gatekeeper of ``context``, started on first use (one per context)."""
    with _gatekeepers_lock:
        keeper = _gatekeepers.get(context)
        if keeper is None:
            keeper = _gatekeepers[context] = Gatekeeper(context, keys)
        elif keeper.keys != keys:
            raise ValueError("one zmq context serves one mesh: its gatekeeper has other keys")
        return keeper


def release_gatekeeper(context: zmq.Context[Any]) -> Gatekeeper | None:
    """Forget ``context``'s gatekeeper; its thread ends when the context is terminated."""
    with _gatekeepers_lock:
        return _gatekeepers.pop(context, None)
