"""The multi-turn reference server (``session_server``) whose answer delay depends on the
turn, as a server with a prefix cache behaves: a session's first turn is cold (slow), its
later turns find their history cached (fast), or the converse.

Every check of ``session_server`` holds (history, one turn in flight per session, 409 and
``/stats`` otherwise); only the delay before each answer differs: ``delays_ms[k]`` for a
session's turn k (0-based: the exchanges it has had so far), the last entry for every
turn after. Run as
``python -m tests.harness.turn_latency_server '<JSON options>' <parent pid>``.
"""

from __future__ import annotations

import sys
from typing import Any

from tests.harness import session_server
from tests.harness.session_server import SessionServer


class TurnLatencyServer(SessionServer):
    """``SessionServer`` with ``delays_ms=[first turn, second, ...]`` (the last one for
    every later turn) instead of one ``delay_ms``."""

    child_module = "tests.harness.turn_latency_server"

    def __init__(self, delays_ms: list[float], **options: Any) -> None:
        if not delays_ms:
            raise ValueError("delays_ms needs at least the first turn's delay")
        super().__init__(delays_ms=list(delays_ms), **options)


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


if __name__ == "__main__":
    session_server.main(sys.argv, _TurnState)
