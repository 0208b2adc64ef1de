"""Loopback ports for what the embedded targets start (services, nginx, the image registry)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nobody listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bind_problem(port: int) -> OSError | None:
    """None when `port` can be listened on now; otherwise why not (EADDRINUSE: it is taken).
    Bound as the servers started here bind (SO_REUSEADDR): connections of an old server in
    TIME_WAIT do not hold the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc
    return None
