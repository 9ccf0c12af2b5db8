"""An OpenAI-compatible judge on loopback for the rollout tests (real HTTP, JSON mode as the client asks it):
by default answering the pointwise rating the canary asks for (:func:`pointwise_verdict`); the shadow's
tests pass their pairwise verdict instead."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def pointwise_verdict(body: dict) -> str:
    """5 when the answer mentions the keeper, else 1; a request containing ``Q-broken`` gets a reply that is
    not JSON, one with ``Q-seven`` the score 7 (failed calls, to be counted and never scored)."""
    request, answer = body["messages"][-1]["content"].split("\n\nAnswer:\n", 1)
    if "Q-broken" in request:
        return "not json"
    if "Q-seven" in request:
        return json.dumps({"score": 7})
    return json.dumps({"score": 5 if "keeper" in answer else 1})


@contextmanager
def judge_endpoint(verdict: Callable[[dict], str] = pointwise_verdict) -> Iterator[tuple[str, list[dict]]]:
    """The base URL (for SLUICE_JUDGE_BASE_URL) and the request bodies the judge received; ``verdict`` makes
    the reply's content from a request body."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body)
            content = verdict(body)
            data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
