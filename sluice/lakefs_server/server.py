"""Run the embedded lakeFS-compatible server under uvicorn."""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path

import uvicorn

from .api.auth import Credentials
from .app import create_app

log = logging.getLogger("sluice.lakefs")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) on accepted
    # sockets only when it sees that proto; with Nagle on, every call stalls ~40 ms
    # on the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def serve(
    *,
    data_dir: Path,
    host: str,
    port: int,
    access_key_id: str,
    secret_access_key: str,
    ready_file: Path | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted. With ``ready_file``, write ``{endpoint, pid}``
    there once the socket accepts connections (port 0 picks a free port)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not _is_loopback(host):
        log.warning("binding to %s: the lakeFS API is reachable from other machines", host)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it will hold repository content
    lock = hold_data_dir(data_dir)
    app, _ = create_app(data_dir.resolve(), Credentials(access_key_id, secret_access_key))
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise SystemExit(
            f"error: cannot listen on {host}:{port}: {exc.strerror}. Choose another port "
            "(--port, or lakefs.embedded_port=... for `sluice` commands; 0 picks a free one)"
        ) from None
    actual_port = sock.getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    endpoint = f"http://{url_host}:{actual_port}"

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_keep_alive=30)
    server = uvicorn.Server(config)

    if ready_file is not None:
        original_startup = server.startup

        async def startup(sockets: list[socket.socket] | None = None) -> None:
            await original_startup(sockets=sockets)
            tmp = ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"endpoint": endpoint, "pid": os.getpid()}))
            os.replace(tmp, ready_file)

        server.startup = startup  # type: ignore[method-assign]

    log.info("lakeFS-compatible API at %s/api/v1, data in %s", endpoint, data_dir)
    try:
        server.run(sockets=[sock])
    finally:
        lock.close()


def hold_data_dir(data_dir: Path):  # type: ignore[no-untyped-def]
    """One server per data directory: SQLite would cope, but commits assume a
    single writer."""
    handle = (data_dir / "server.lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SystemExit(f"error: {data_dir} is in use by another lakeFS-compatible server (pid {holder})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
