"""The mock server as its own process: custom responders travel to it, a responder that
cannot travel is refused clearly, and the child never outlives its parent."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from aiperf.mock_server import MockServerProcess
from aiperf.mock_server.responders import RequestPlan, Responder
from tests.harness import wait_gone


class EchoLengthResponder(Responder):
    """A protocol of our own: answers the request body's length."""

    path = "/v1/echo-length"

    def __init__(self, extra: int) -> None:
        self.extra = extra

    def parse(self, body: dict, default_tokens: int) -> RequestPlan:
        return RequestPlan(stream=False, output_tokens=1, prompt_tokens=len(body) + self.extra)

    def body(self, request_id: str, text: str, plan: RequestPlan) -> bytes:
        return json.dumps({"length": plan.prompt_tokens}).encode()


def test_a_custom_responder_is_served_by_the_child_process() -> None:
    with MockServerProcess(responders=[EchoLengthResponder(extra=40)]) as server:
        request = urllib.request.Request(server.url + "/v1/echo-length",
                                         data=json.dumps({"a": 1, "b": 2}).encode())
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read()) == {"length": 42}


def test_a_responder_that_cannot_be_sent_is_a_clear_error() -> None:
    class LocalResponder(EchoLengthResponder):  # not importable by name in the child
        pass

    with pytest.raises(ValueError, match=r"LocalResponder cannot be sent to the mock server's "
                                         r"process .*define its class at the top level"):
        MockServerProcess(responders=[LocalResponder(extra=0)])


def test_the_child_dies_with_its_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        from aiperf.mock_server import MockServerProcess
        server = MockServerProcess()
        server.start()
        print(server.pid, flush=True)
        os._exit(0)  # no clean-up: only the parent-death signal can stop the child
    """))
    root = Path(__file__).parents[3]
    parent = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=30, cwd=root, env={"PYTHONPATH": str(root),
                                                       "PATH": "/usr/bin:/bin"})
    child = int(parent.stdout.split()[0])
    assert wait_gone([child], timeout=5) == []


class HangsWhenUnpickled:
    """Unpickling it sleeps: a child that never gets to listen."""

    def __reduce__(self) -> tuple[object, tuple[float]]:
        return (time.sleep, (60.0,))


def test_a_child_that_never_listens_is_given_up_on_at_the_deadline() -> None:
    server = MockServerProcess(responders=[HangsWhenUnpickled()])  # type: ignore[list-item]
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"mock server did not start: .*no answer within"):
        server.start(timeout=1.0)
    assert time.monotonic() - started < 8
    assert server.pid is not None and wait_gone([server.pid], timeout=5) == []


def test_a_child_that_cannot_start_fails_start_at_once() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MockServerProcess(port=taken.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=r"mock server did not start: 'cannot start: "
                                               r"OSError: .*Address already in use"):
            server.start(timeout=10)
        assert time.monotonic() - started < 8  # the child died: no waiting for the deadline
