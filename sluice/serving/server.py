"""Where the server may listen and with which keys: the listening socket, its URL, the API keys
from the environment (none: loopback only).

This module stays light (no FastAPI or uvicorn at import): :mod:`sluice.serving` imports it for
the in-process handle, and :mod:`sluice.serving.app` for the rules on hosts and keys.
"""

from __future__ import annotations

import ipaddress
import os
import socket

API_KEYS_VARIABLE = "SLUICE_SERVING_API_KEYS"


class ServingError(RuntimeError):
    """The server cannot start as configured; the message says what to do."""


def api_keys_from_environment() -> list[str]:
    return [key.strip() for key in os.environ.get(API_KEYS_VARIABLE, "").split(",") if key.strip()]


def api_keys_for(host: str, api_keys: list[str] | None) -> list[str]:
    """The keys clients must send (``api_keys``, default from SLUICE_SERVING_API_KEYS); none is
    allowed only on loopback."""
    keys = api_keys_from_environment() if api_keys is None else [k for k in api_keys if k]
    if not keys and not _is_loopback(host):
        raise ServingError(f"refusing to serve on {host} without API keys: set {API_KEYS_VARIABLE}=key1,key2 "
                           "(clients send 'Authorization: Bearer <key>'), or bind 127.0.0.1")
    return keys


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), with Nagle off on accepted connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when it sees that proto;
    # with Nagle on, each streamed chunk would wait for the client's delayed ACK (~40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ServingError(f"cannot listen on {host}:{port}: {error.strerror}; choose another port (--port, or "
                           "serving.port=...; 0 picks a free one)") from None
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
