"""The multi-turn reference server (``session_server``) whose answer delay depends on the
turn, as a server with a prefix cache behaves: a session's first turn is cold (slow), its
later turns find their history cached (fast), or the converse.

Every check of ``session_server`` holds (history, one turn in flight per session, 409 and
``/stats`` otherwise); only the delay before each answer differs: ``delays_ms[k]`` for a
session's turn k (0-based: the exchanges it has had so far), the last entry for every
turn after. Run as ``python turn_latency_server.py '<JSON options>' <parent pid>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from tests.harness import session_server
from tests.harness.session_server import START_TIMEOUT_S, SessionServer


class TurnLatencyServer(SessionServer):
    """``SessionServer`` with ``delays_ms=[first turn, second, ...]`` (the last one for
    every later turn) instead of one ``delay_ms``."""

    def __init__(self, delays_ms: list[float], **options: Any) -> None:
        if not delays_ms:
            raise ValueError("delays_ms needs at least the first turn's delay")
        super().__init__(delays_ms=list(delays_ms), **options)

    def start(self) -> str:
        # This file as the child, so that its state (per-turn delays) serves.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.turn_latency_server",
             json.dumps(self.options), str(os.getpid())],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=_repo_root())
        assert self._process.stdout is not None
        line = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        os.set_blocking(self._process.stdout.fileno(), False)
        while time.monotonic() < deadline and self._process.poll() is None:
            line += self._process.stdout.read() or b""
            if line.startswith(b"listening on ") and b"\n" in line:
                self.url = line.split()[2].decode()
                return self.url
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"turn latency server did not start: {line!r}")


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _TurnState(session_server._State):
    """Sets the answer's delay from the session's turn when its request is checked: the
    handler checks a request and then starts its answer, which reads the delay, with no
    await between, so concurrent sessions each get their own turn's delay."""

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        self.delays_s = [float(d) / 1000 for d in options["delays_ms"]]

    def check(self, session: str | None, messages: Any) -> str | None:
        problem = super().check(session, messages)
        if problem is None and session is not None:
            turn = len(self.history.get(session, [])) // 2
            self.delay_s = self.delays_s[min(turn, len(self.delays_s) - 1)]
        return problem


async def _serve(options: dict[str, Any]) -> None:
    state = _TurnState(options)
    listener = await asyncio.start_server(
        lambda r, w: session_server._handle(state, r, w), "127.0.0.1", 0, backlog=1024)
    print(f"listening on http://127.0.0.1:{listener.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    for task in asyncio.all_tasks() - {asyncio.current_task()}:
        task.cancel()
    await asyncio.sleep(0)


def _main(argv: list[str]) -> None:
    if sys.platform.startswith("linux"):
        from aiperf.common.process import libc

        libc().prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the parent
    if os.getppid() != int(argv[2]):
        os._exit(1)
    asyncio.run(_serve(json.loads(argv[1])))


if __name__ == "__main__":
    _main(sys.argv)
