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
    # Multi-turn datasets: the turns of one session are consecutive entries, the first with
    # turn_index 0. session is the session's index in the dataset (-1: a single request);
    # delay_ms the think time before this turn is sent, after the previous one's answer.
    session: int = -1
    turn_index: int = 0
    delay_ms: float = 0.0
    session_id: str = ""
    # A system prompt sent before the conversation (--shared-system-prompt-length); its
    # tokens are in input_tokens.
    system: str = ""
    system_tokens: int = 0


class SessionLayout:
    """Where the sessions of a multi-turn dataset sit in its flat list of turns.

    Credit ids map onto the dataset cyclically (``turn_for``), so a closed-loop lease that
    starts on a session's first turn and spans whole sessions gives every session a
    contiguous block of ids: the worker runs the block as one session, in order."""

    def __init__(self, turns: list[Turn]) -> None:
        self.size = len(turns)
        self.starts: list[int] = []
        self.lengths: list[int] = []
        self.session_at: list[int] = []  # flat index -> index into starts
        for i, turn in enumerate(turns):
            if turn.turn_index == 0 or i == 0 or turns[i - 1].session != turn.session:
                self.starts.append(i)
                self.lengths.append(0)
            self.lengths[-1] += 1
            self.session_at.append(len(self.starts) - 1)

    @property
    def sessions(self) -> int:
        return len(self.starts)

    def align_up(self, credit_id: int) -> int:
        """The first id at or after ``credit_id`` that starts a session."""
        if not self.size:
            return credit_id
        flat = credit_id % self.size
        session = self.session_at[flat]
        start = self.starts[session]
        if start == flat:
            return credit_id
        return credit_id + start + self.lengths[session] - flat

    def whole_sessions(self, first_id: int, at_least: int) -> int:
        """How many ids from ``first_id`` (a session start) cover whole sessions and at
        least ``at_least`` ids."""
        count = 0
        while count < at_least:
            flat = (first_id + count) % self.size
            count += self.lengths[self.session_at[flat]]
        return count

    def ids_of_sessions(self, first_id: int, sessions: int) -> int:
        """Ids taken by ``sessions`` whole sessions from ``first_id`` (a session start)."""
        count = 0
        for _ in range(sessions):
            flat = (first_id + count) % self.size
            count += self.lengths[self.session_at[flat]]
        return count


def session_layout(turns: list[Turn]) -> SessionLayout | None:
    """The sessions of a multi-turn dataset; None for a dataset of single requests."""
    if not turns or turns[0].session < 0:
        return None
    return SessionLayout(turns)


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
