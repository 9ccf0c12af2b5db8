"""The embedded lakeFS server run inside the test process, on loopback, for
tests that must watch what it does from within (which files it fsyncs, how
its SQLite connection is set up). The app, the socket and uvicorn are the
ones ``sluice lakefs serve`` uses; only the process differs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lakefs
import uvicorn

from sluice.lakefs_server.api.auth import Credentials
from sluice.lakefs_server.api.state import ServerState
from sluice.lakefs_server.app import create_app
from sluice.lakefs_server.server import bind
from tests.conftest import TEST_KEY


@contextmanager
def serve_in_process(data_dir: Path) -> Iterator[tuple[lakefs.Client, ServerState]]:
    """An SDK client for a server on ``data_dir``, and the server's state."""
    app, state = create_app(data_dir, Credentials(*TEST_KEY))
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the in-process server did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield lakefs.Client(host=url, username=TEST_KEY[0], password=TEST_KEY[1]), state
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
