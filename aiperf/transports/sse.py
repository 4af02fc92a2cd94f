"""An incremental Server-Sent Events parser for what real servers send.

Handles: events split across network reads, CRLF and lone CR line ends (a CR at the end of a
read is held back, since its LF may come in the next read), comment lines (``: ping``),
``event:`` names, multi-line ``data:``, and a final event without its blank line (flushed by
``close``). It does not interpret payloads: that is the endpoint plugin's job.
"""

from __future__ import annotations

MESSAGE = b"message"


class SSEParser:
    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """Add bytes from one network read; return the complete events as (event, data)."""
        buffer = self._buffer + data if self._buffer else data
        if b"\r" in buffer:
            held = b""
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n") + held
        if b"\n\n" not in buffer:
            self._buffer = buffer
            return []
        *blocks, self._buffer = buffer.split(b"\n\n")
        events = []
        for block in blocks:
            event = parse_block(block)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[tuple[bytes, bytes]]:
        """End of stream: an event that lacked its closing blank line still counts."""
        rest, self._buffer = self._buffer.replace(b"\r", b""), b""
        event = parse_block(rest.strip(b"\n")) if rest.strip() else None
        return [event] if event is not None else []


def parse_block(block: bytes) -> tuple[bytes, bytes] | None:
    """One event's lines (without the blank line) -> (event name, data), or None if the
    block carries no data (a comment, a lone ``event:``)."""
    if block.startswith(b"data: ") and b"\n" not in block:  # the common case, fast
        return MESSAGE, block[6:]
    name = MESSAGE
    data_lines: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data_lines.append(value)
        elif field == b"event":
            name = value
    if not data_lines:
        return None
    return name, b"\n".join(data_lines)
