"""A record processor that writes down the size of every raw batch it receives, for the
tests of the record path's byte bounds: ``AIPERF_BATCH_SIZES_FILE`` (the environment the
mesh inherits) names the file; one line per batch, "records bytes"."""

from __future__ import annotations

import os
from typing import Any

from aiperf.common.codec import decode_raw_frames
from aiperf.common.messages import ConfigureProfileCommand
from aiperf.services.record_processor import RecordProcessor

SIZES_ENV = "AIPERF_BATCH_SIZES_FILE"


class _Recording:
    """The processor's receive socket, writing each batch's size as it passes."""

    def __init__(self, inner: Any, path: str) -> None:
        self._inner = inner
        self._path = path

    async def recv_multipart(self) -> list[bytes]:
        frames: list[bytes] = await self._inner.recv_multipart()
        records = len(decode_raw_frames(list(frames)).records)
        with open(self._path, "a") as out:
            out.write(f"{records} {sum(len(frame) for frame in frames)}\n")
        return frames

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class BatchSizeProcessor(RecordProcessor):
    async def _configure(self, command: ConfigureProfileCommand) -> dict[str, Any]:
        payload = await super()._configure(command)
        path = os.environ.get(SIZES_ENV)
        if path and not isinstance(self._raw, _Recording):
            # The receive loop looks the socket up for each batch: the next one is seen.
            self._raw = _Recording(self._raw, path)
        return payload


def read_sizes(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """(records, bytes) of every batch written down."""
    with open(path) as sizes:
        return [(int(n), int(b)) for n, b in (line.split() for line in sizes if line.strip())]
