"""Small network helpers."""

from __future__ import annotations

import socket


def with_http_scheme(url: str) -> str:
    """``url`` as AIPerf reads a server address: surrounding blanks dropped, and
    ``http://`` in front when it names no scheme (``localhost:8000``). The one place this
    rule lives, so that ``url``, ``urls``, the worker's targets and server metrics' URLs
    cannot come to disagree about the same text."""
    text = url.strip()
    if text and "://" not in text:
        return "http://" + text
    return text


def free_tcp_ports(host: str, count: int) -> list[int]:
    """Ask the kernel for ``count`` distinct free ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()
