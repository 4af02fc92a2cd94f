"""Small network helpers."""

from __future__ import annotations

import socket


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
