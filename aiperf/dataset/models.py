"""One dataset entry, and the file format that carries a run's dataset to the services."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import msgspec


class Turn(msgspec.Struct):
    """What one request sends. ``input_tokens`` is counted once, when the dataset is built."""

    text: str
    input_tokens: int
    output_length: int | None = None
    timestamp_ms: float | None = None
    extra: dict[str, Any] = {}


def turn_for(credit_id: int, turns: int) -> int:
    """The dataset entry a credit sends when nothing else chose one: the timing manager
    (scheduled credits) and workers (leased ids) must agree on it."""
    return credit_id % turns if turns else 0


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[Turn])


def write_dataset(path: Path, turns: list[Turn]) -> None:
    path.write_bytes(_ENCODER.encode(turns))


def read_dataset(path: str | Path) -> list[Turn]:
    return _DECODER.decode(Path(path).read_bytes())


def dataset_packed(file_bytes: bytes) -> bytes:
    """A dataset file's bytes as a configure command carries them to another host:
    zlib-compressed (the command's field is base64 on the wire)."""
    return zlib.compress(file_bytes, 1)


def dataset_of(path: str | None, inline: bytes | None = None) -> list[Turn]:
    """A run's dataset as its configure command carries it: the compressed bytes when they
    travelled with the command (a service on another host), else the file, else none."""
    if inline is not None:
        return _DECODER.decode(zlib.decompress(inline))
    return read_dataset(path) if path else []
