"""CURVE on the mesh's sockets: real zmq sockets on tcp://127.0.0.1, a real gatekeeper."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq
import zmq.asyncio
from zmq.utils import z85

from aiperf.common.comms import CommunicationError, make_socket, terminate
from aiperf.common.config import ServiceConfig
from aiperf.common.curve import (
    HEARTBEAT_IVL_MS,
    HEARTBEAT_TIMEOUT_MS,
    HEARTBEAT_TTL_MS,
    SECURITY_LOGGER,
    ZAP_ENDPOINT,
    MeshKeys,
    RefusalLog,
    ensure_gatekeeper,
)
from aiperf.common.net import free_tcp_ports

DEADLINE = 10.0  # seconds; only ever a bound on a wait, never a measured threshold
GATEKEEPER = "aiperf-gatekeeper"


def _endpoint() -> str:
    (port,) = free_tcp_ports("127.0.0.1", 1)
    return f"tcp://127.0.0.1:{port}"


def _secrets(*keys: MeshKeys) -> list[str]:
    return [s.get_secret_value() for k in keys for s in (k.server_secret, k.client_secret)]


def _foreign_client(keys: MeshKeys) -> MeshKeys:
    """The mesh's server key (it is public) with a client pair of the peer's own."""
    stranger = MeshKeys.generate()
    return MeshKeys(server_public=keys.server_public, server_secret=keys.server_secret,
                    client_public=stranger.client_public, client_secret=stranger.client_secret)


def _wait_for(predicate: Callable[[], bool], deadline: float = DEADLINE) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == SECURITY_LOGGER]


def _gatekeeper_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == GATEKEEPER]


def _terminate_within_deadline(context: zmq.Context[Any]) -> None:
    done = threading.Thread(target=terminate, args=(context,), name="test-terminate")
    done.start()
    done.join(DEADLINE)
    assert not done.is_alive(), "terminate hung"


@pytest.fixture
def keys() -> MeshKeys:
    return MeshKeys.generate()


@pytest.fixture
def security_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger=SECURITY_LOGGER):
        yield caplog


@pytest.fixture(autouse=True)
def _no_gatekeeper_left() -> Iterator[None]:
    yield
    assert _wait_for(lambda: not _gatekeeper_threads()), "a gatekeeper thread outlived its test"


# -- secrets stay secret ----------------------------------------------------------------


def test_mesh_keys_never_show_their_secrets(keys: MeshKeys) -> None:
    config = ServiceConfig(backend="external").prepared()
    try:
        assert config.mesh_keys is not None
        for text in (repr(keys), str(keys), keys.model_dump_json(), str(keys.model_dump()),
                     repr(config), str(config), config.model_dump_json(),
                     str(config.model_dump())):
            for secret in _secrets(keys, config.mesh_keys):
                assert secret not in text
        # The one way out, used to hand the keys to the controller and remote workers.
        revealed = config.model_dump_json(context={"reveal": True})
        assert config.mesh_keys.client_secret.get_secret_value() in revealed
        assert ServiceConfig.model_validate_json(revealed).mesh_keys == config.mesh_keys
    finally:
        shutil.rmtree(config.run_dir, ignore_errors=True)


# -- the right keys deliver -------------------------------------------------------------


def _pair_up(context: zmq.Context[Any], pattern: str, keys: MeshKeys) -> tuple[Any, Any]:
    """(binding end, connecting end) of one of the mesh's socket patterns."""
    address = _endpoint()
    if pattern == "router-dealer":
        server = make_socket(context, zmq.ROUTER, address, bind=True, keys=keys)
        client = make_socket(context, zmq.DEALER, address, bind=False, identity=b"w0",
                             keys=keys)
    else:
        server = make_socket(context, zmq.PULL, address, bind=True, keys=keys)
        client = make_socket(context, zmq.PUSH, address, bind=False, keys=keys)
    return server, client


@pytest.mark.parametrize("pattern", ["router-dealer", "push-pull"])
def test_the_right_keys_deliver(pattern: str, keys: MeshKeys,
                                security_log: pytest.LogCaptureFixture) -> None:
    context = zmq.Context()
    server, client = _pair_up(context, pattern, keys)
    try:
        assert server.getsockopt(zmq.MECHANISM) == client.getsockopt(zmq.MECHANISM) == zmq.CURVE
        client.send(b"hello")
        assert server.poll(DEADLINE * 1000)
        frames = server.recv_multipart()
        assert frames[-1] == b"hello"
        if pattern == "router-dealer":
            assert frames[0] == b"w0"
            server.send_multipart([b"w0", b"back"])
            assert client.poll(DEADLINE * 1000)
            assert client.recv() == b"back"
    finally:
        client.close(0)
        server.close(0)
        _terminate_within_deadline(context)
    assert _refusals(security_log) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("pattern", ["router-dealer", "push-pull"])
async def test_the_right_keys_deliver_on_asyncio_contexts(
        pattern: str, keys: MeshKeys, security_log: pytest.LogCaptureFixture) -> None:
    context = zmq.asyncio.Context()
    server, client = _pair_up(context, pattern, keys)
    try:
        await client.send(b"hello")
        frames = await asyncio.wait_for(server.recv_multipart(), DEADLINE)
        assert frames[-1] == b"hello"
        if pattern == "router-dealer":
            await server.send_multipart([frames[0], b"back"])
            assert await asyncio.wait_for(client.recv(), DEADLINE) == b"back"
    finally:
        client.close(0)
        server.close(0)
        _terminate_within_deadline(context)
    assert _refusals(security_log) == []


# -- everyone else is refused, and said so ------------------------------------------------


def _rogue_keys(kind: str, keys: MeshKeys) -> MeshKeys | None:
    if kind == "another mesh":
        return MeshKeys.generate()
    if kind == "own client pair":
        return _foreign_client(keys)
    return None  # no CURVE at all


@pytest.mark.parametrize("kind", ["another mesh", "own client pair", "no curve"])
def test_a_rogue_peer_delivers_nothing_and_is_logged(
        kind: str, keys: MeshKeys, security_log: pytest.LogCaptureFixture) -> None:
    context, rogue_context = zmq.Context(), zmq.Context()
    address = _endpoint()
    server = make_socket(context, zmq.PULL, address, bind=True, keys=keys)
    legit = make_socket(context, zmq.PUSH, address, bind=False, keys=keys)
    rogue_keys = _rogue_keys(kind, keys)
    rogue = make_socket(rogue_context, zmq.PUSH, address, bind=False, keys=rogue_keys)
    try:
        rogue.send(b"rogue", zmq.NOBLOCK)  # queued until a handshake that never completes
        assert _wait_for(lambda: bool(_refusals(security_log))), "no refusal was logged"
        received = []
        for i in range(3):  # the legitimate peer keeps working next to the rogue
            legit.send(b"good %d" % i)
            assert server.poll(DEADLINE * 1000)
            received.append(server.recv())
        assert received == [b"good 0", b"good 1", b"good 2"]
        assert not server.poll(100)  # and the rogue's message never arrives
        if kind != "no curve":
            # A peer without CURVE is often gone before its address can be read; these
            # keep retrying, and the key-bearing one reaches the gatekeeper itself.
            assert _wait_for(lambda: any("127.0.0.1" in line
                                         for line in _refusals(security_log)))
    finally:
        rogue.close(0)
        legit.close(0)
        server.close(0)
        _terminate_within_deadline(rogue_context)
        _terminate_within_deadline(context)
    lines = _refusals(security_log)
    assert all(line.startswith("refused a peer at ") for line in lines)
    assert all(line.endswith("(not this mesh's key)") for line in lines)
    everything = " ".join(lines) + security_log.text
    for secret in _secrets(keys, *([rogue_keys] if rogue_keys else [])):
        assert secret not in everything
    if kind == "own client pair":
        assert rogue_keys is not None
        assert any(f"127.0.0.1: client key {rogue_keys.client_public}" in line
                   for line in lines)


def test_the_gatekeeper_speaks_zap(keys: MeshKeys,
                                   security_log: pytest.LogCaptureFixture) -> None:
    """The decision table, through the real ZAP endpoint (RFC 27 request and reply)."""
    mesh_client = z85.decode(keys.client_public)
    stranger = z85.decode(MeshKeys.generate().client_public)
    context = zmq.Context()
    ensure_gatekeeper(context, keys)
    asker = context.socket(zmq.REQ)
    asker.connect(ZAP_ENDPOINT)

    def ask(*frames: bytes) -> bytes:
        asker.send_multipart(list(frames))
        assert asker.poll(DEADLINE * 1000)
        reply = asker.recv_multipart()
        assert reply[:2] == [b"1.0", b"42"]
        return reply[2]

    head = (b"1.0", b"42", b"", b"10.1.2.3", b"")
    try:
        assert ask(*head, b"CURVE", mesh_client) == b"200"
        assert ask(*head, b"CURVE", stranger) == b"400"
        assert ask(*head, b"NULL") == b"400"
        assert ask(b"1.0", b"42", b"short") == b"500"
    finally:
        asker.close(0)
        _terminate_within_deadline(context)
    # One line for 10.1.2.3: the second refusal fell within the rate limit.
    assert _refusals(security_log) == [
        f"refused a peer at 10.1.2.3: client key {z85.encode(stranger).decode()} "
        "(not this mesh's key)"
    ]


def test_refusals_are_rate_limited_per_peer(security_log: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = RefusalLog(interval=10.0, clock=lambda: now[0], max_peers=2)
    for _ in range(50):  # a scanner hammering from one address
        log.refuse("10.0.0.1", "client key X")
    log.refuse("10.0.0.2", "client key Y")
    log.refuse("10.0.0.3", "client key Z")  # a third address at once: over max_peers
    now[0] += 10.0
    log.refuse("10.0.0.1", "client key X")
    log.refuse("10.0.0.3", "client key Z")  # the old entries expired: room again
    assert _refusals(security_log) == [
        "refused a peer at 10.0.0.1: client key X (not this mesh's key)",
        "refused a peer at 10.0.0.2: client key Y (not this mesh's key)",
        "refused a peer at 10.0.0.1: client key X (not this mesh's key)",
        "refused a peer at 10.0.0.3: client key Z (not this mesh's key)",
    ]


# -- socket options and the gatekeeper's lifetime -----------------------------------------


def test_keyed_tcp_sockets_send_heartbeats(keys: MeshKeys) -> None:
    context = zmq.Context()
    address = _endpoint()
    server = make_socket(context, zmq.ROUTER, address, bind=True, keys=keys)
    client = make_socket(context, zmq.DEALER, address, bind=False, keys=keys)
    inproc = make_socket(context, zmq.PAIR, "inproc://plain", bind=True)
    try:
        for sock in (server, client):
            assert sock.getsockopt(zmq.HEARTBEAT_IVL) == HEARTBEAT_IVL_MS
            assert sock.getsockopt(zmq.HEARTBEAT_TIMEOUT) == HEARTBEAT_TIMEOUT_MS
            assert sock.getsockopt(zmq.HEARTBEAT_TTL) == HEARTBEAT_TTL_MS
        assert server.getsockopt(zmq.CURVE_SERVER) == 1
        assert client.getsockopt(zmq.CURVE_SERVER) == 0
        assert inproc.getsockopt(zmq.MECHANISM) == zmq.NULL
        assert inproc.getsockopt(zmq.HEARTBEAT_IVL) == 0
    finally:
        for sock in (inproc, client, server):
            sock.close(0)
        _terminate_within_deadline(context)


@pytest.mark.parametrize("context_class", [zmq.Context, zmq.asyncio.Context])
def test_terminate_ends_the_one_gatekeeper_of_a_context(
        context_class: type[zmq.Context[Any]], keys: MeshKeys) -> None:
    context = context_class()
    sockets = [make_socket(context, zmq.PULL, _endpoint(), bind=True, keys=keys)
               for _ in range(3)]
    assert len(_gatekeeper_threads()) == 1  # created lazily, once per context
    for sock in sockets:
        sock.close(0)
    _terminate_within_deadline(context)
    assert _gatekeeper_threads() == []


def test_a_plain_term_ends_the_gatekeeper_too(keys: MeshKeys) -> None:
    """Whoever terms the context, its gatekeeper does not outlive it."""
    context = zmq.Context()
    make_socket(context, zmq.PULL, _endpoint(), bind=True, keys=keys).close(0)
    (thread,) = _gatekeeper_threads()
    context.term()
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_a_context_serves_one_mesh(keys: MeshKeys) -> None:
    context = zmq.Context()
    sock = make_socket(context, zmq.PULL, _endpoint(), bind=True, keys=keys)
    try:
        with pytest.raises(CommunicationError, match="one mesh"):
            make_socket(context, zmq.PULL, _endpoint(), bind=True, keys=MeshKeys.generate())
    finally:
        sock.close(0)
        _terminate_within_deadline(context)


def test_a_context_whose_zap_endpoint_is_taken_refuses_to_bind_keyed(keys: MeshKeys) -> None:
    """Another ZAP handler in the context would decide for us: refuse to bind instead."""
    context = zmq.Context()
    squatter = context.socket(zmq.REP)
    squatter.bind(ZAP_ENDPOINT)
    try:
        with pytest.raises(CommunicationError, match="cannot bind"):
            make_socket(context, zmq.PULL, _endpoint(), bind=True, keys=keys)
        assert _gatekeeper_threads() == []
    finally:
        squatter.close(0)
        _terminate_within_deadline(context)
