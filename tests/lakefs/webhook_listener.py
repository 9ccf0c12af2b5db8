"""A real HTTP listener on loopback that records webhook calls."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedCall:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class WebhookListener:
    status: int = 200
    on_call: Callable[[ReceivedCall], None] | None = None  # runs before the answer is sent
    calls: list[ReceivedCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                call = ReceivedCall(self.path, {k.lower(): v for k, v in self.headers.items()},
                                    json.loads(self.rfile.read(length) or b"{}"))
                listener.calls.append(call)
                if listener.on_call is not None:
                    listener.on_call(call)
                self.send_response(listener.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, event_type: str, count: int = 1, timeout: float = 10.0) -> list[ReceivedCall]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [c for c in self.calls if c.body.get("event_type") == event_type]
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"no {event_type} webhook within {timeout} s; got {[c.body for c in self.calls]}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
