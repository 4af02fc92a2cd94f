"""The host's end of the mesh's stderr: each line the controller or a service writes is
re-emitted through Python logging (logger ``aiperf.mesh``), so pytest's log capture shows
it in the report of the test that ran, instead of it going raw to the terminal.

The last lines are also kept: when the controller dies, its last words (a traceback) go
into the ``MeshError`` that says so.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import threading
from typing import IO

LOGGER_NAME = "aiperf.mesh"
TAIL_LINES = 20
# What ``aiperf.common.logging`` writes: "<date> <time> <LEVEL> <logger>: <message>".
_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(\S+): (.*)$")


class LogRelay:
    """Reads ``stream`` on a daemon thread until it closes. ``to_logging`` False writes
    each line to the host's stderr as it is (the CLI's choice) and still keeps the tail."""

    def __init__(self, stream: IO[bytes], *, to_logging: bool = True) -> None:
        self.logger = logging.getLogger(LOGGER_NAME)
        self.to_logging = to_logging
        self._stream = stream
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name="aiperf-mesh-log", daemon=True)
        self._thread.start()

    def tail(self) -> list[str]:
        with self._lock:
            return list(self._tail)

    def join(self, timeout: float) -> None:
        """Wait (bounded) until everything the mesh wrote has been relayed."""
        self._thread.join(timeout)

    def _pump(self) -> None:
        level = logging.WARNING
        for raw in iter(self._stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self._tail.append(line)
            if not self.to_logging:
                sys.stderr.write(line + "\n")
                continue
            match = _LINE.match(line)
            if match is not None:
                level = logging.getLevelName(match.group(1))
                self.logger.log(level, "%s: %s", match.group(2), match.group(3))
            elif line.strip():
                # A continuation (a traceback under an error line) or a raw write: at the
                # level of the line it follows, never below a warning.
                self.logger.log(max(level, logging.WARNING), "%s", line)
        self._stream.close()
