"""Reference servers for the service tests: raw asyncio HTTP on 127.0.0.1 in a thread of
the test process, so a mesh (other processes) can load them while the test waits in
``Mesh.run``. Each answers with timings and bodies known by construction."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's head off the connection (its body read and dropped); None when the
    client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return head


def response(body: bytes, status: bytes = b"200 OK",
             content_type: bytes = b"application/json") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
            + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


@contextmanager
def reference_server(handler: Handler) -> Iterator[str]:
    """Serve ``handler`` (called once per request with its head) in a thread; yields the
    base URL. Connections are kept alive until the client closes them."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    url: list[str] = []

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (head := await read_request(reader)) is not None:
                await handler(head, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def main() -> asyncio.Server:
        server = await asyncio.start_server(connection, "127.0.0.1", 0)
        url.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        ready.set()
        return server

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(main())
        loop.run_forever()
        server.close()
        for task in asyncio.all_tasks(loop):
            task.cancel()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    thread = threading.Thread(target=run, name="reference-server", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        raise RuntimeError("reference server did not start")
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_TIMEOUT_S)
