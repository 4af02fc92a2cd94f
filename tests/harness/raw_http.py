"""Raw HTTP/1.1 on an asyncio stream, for servers in the transport tests that must control
every byte a client sees."""

from __future__ import annotations

import asyncio


async def read_request(reader: asyncio.StreamReader) -> bool:
    """One request (head and body) off the connection; False when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return True
