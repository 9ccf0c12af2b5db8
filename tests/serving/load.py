"""Load for the serving tests: clients sending greedy chat requests in a loop, half of them streamed, every
outcome recorded with the version that answered (``X-Sluice-Model-Version``). Either front door: the built-in
engine's (tests/serving/test_hot_swap.py) and the vLLM one's (tests/serving/test_vllm_backend.py)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Self

import httpx

from tests.serving.conftest import API_KEY

AUTH = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "Who keeps the sluice at Yewbrook?"}]


class Load:
    """``clients`` threads asking ``CHAT`` (``max_tokens`` each) until the ``with`` block ends; a request that
    failed, or whose connection dropped, is a failure."""

    def __init__(self, url: str, clients: int, max_tokens: int = 8):
        self.url, self.max_tokens = url, max_tokens
        self.results: list[dict[str, Any]] = []
        self.failures: list[Any] = []
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _run(self, index: int) -> None:
        request = {"messages": CHAT, "max_tokens": self.max_tokens, "temperature": 0}
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=60) as client:
            turn = 0
            while not self._stop.is_set():
                turn += 1
                started = time.monotonic()
                try:
                    response, ok, text = _ask(client, request, stream=turn % 2 == 0)
                except Exception as error:  # a dropped connection is a failure too
                    with self._lock:
                        self.failures.append(repr(error))
                    continue
                outcome = {"client": index, "started": started, "ended": time.monotonic(), "ok": ok, "text": text,
                           "version": response.headers.get("X-Sluice-Model-Version")}
                with self._lock:
                    (self.results if ok else self.failures).append(outcome)

    def count(self, version: str, after: float = 0.0) -> int:
        with self._lock:
            return sum(1 for r in self.results if r["version"] == version and r["started"] > after)


def _ask(client: httpx.Client, request: dict[str, Any], *, stream: bool) -> tuple[httpx.Response, bool, str]:
    """One chat request, whole or streamed: the response, whether it succeeded, and its text (or the error)."""
    if not stream:
        response = client.post("/v1/chat/completions", json=request)
        ok = response.status_code == 200
        return response, ok, response.json()["choices"][0]["message"]["content"] if ok else response.text
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        lines = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    ok = response.status_code == 200 and lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]] if ok else []
    # a usage chunk (vLLM's stream_options) has no choices
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return response, ok, text if ok else str(lines)
