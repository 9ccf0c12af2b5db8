"""Serving: an OpenAI-compatible server for ``models:/<registry.model_name>@<serving.alias>``
that follows the alias (``sluice serve``).

- :mod:`sluice.serving.app` — the HTTP app (``create_app``) and what it answers;
- :mod:`sluice.serving.api` — OpenAI's request and error shapes, reading bodies;
- :mod:`sluice.serving.routes` — the endpoints; :mod:`sluice.serving.generation` —
  the generation path behind the two completion endpoints;
- :mod:`sluice.serving.state` — the running server's parts (``ServingState``);
- :mod:`sluice.serving.server` — the listening socket, API keys, ``run()``;
- :mod:`sluice.serving.engine` — dynamic batching; :mod:`sluice.serving.waiting` — its bounded
  queue; :mod:`sluice.serving.loaded_model` — the model it serves;
- :mod:`sluice.serving.model_source` — the aliases' lookup, download, the watcher;
  :mod:`sluice.serving.adapters` — the names a request may pick and the LoRA adapters over the
  base; :mod:`sluice.serving.adapter_routes` — vLLM's load/unload endpoints and model list;
- :mod:`sluice.serving.engine_server` — the same app over one local folder, shaped like
  ``vllm serve`` (the vLLM backend's stand-in in tests);
- :mod:`sluice.serving.feedback` — feedback store and preference pairs;
- :mod:`sluice.serving.telemetry` — Prometheus metrics and the request log.

This module stays light (no torch, mlflow or FastAPI at import): it has the
in-process handle for tests and the local stack, and :func:`request_reload`
for whoever moves the alias::

    from sluice.serving import ServingHandle, request_reload

    with ServingHandle(config, port=0) as server:   # uvicorn on a thread, a free port
        server.wait_until_serving()                  # the alias's version is loaded
        ...                                          # OpenAI clients: base_url=server.url + "/v1"
        request_reload(server.url)                   # after moving the alias: the version now served
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.core.config import SluiceConfig
    from sluice.serving.state import ServingState

__all__ = ["ServingHandle", "request_reload"]


def request_reload(url: str, api_key: str | None = None, timeout: float = 300) -> str:
    """Ask a running server to look at its alias now; returns the version it serves once the
    new one is loaded. Raises RuntimeError with the server's reason (unreachable, no version,
    the new version failed to load — the old one then keeps serving)."""
    import httpx

    if api_key is None:
        from sluice.serving.server import api_keys_from_environment

        keys = api_keys_from_environment()
        api_key = keys[0] if keys else None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(f"{url.rstrip('/')}/admin/reload", headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        raise RuntimeError(f"cannot reach the serving endpoint at {url}: {error}") from error
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 200:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else None
        raise RuntimeError(f"reload at {url} failed ({response.status_code}): {message or response.text[:500]}")
    return str(body["version"])


class ServingHandle:
    """The server on a background thread of this process (uvicorn, real sockets).

    ``port=0`` picks a free port; ``api_keys`` default to SLUICE_SERVING_API_KEYS. ``start()``
    returns once the socket accepts connections — the model may still be loading (see
    :meth:`wait_until_serving`). ``stop()`` lets running requests finish.
    """

    def __init__(self, config: SluiceConfig, *, host: str = "127.0.0.1", port: int = 0,
                 api_keys: list[str] | None = None):
        self.config, self.host, self.requested_port, self.api_keys = config, host, port, api_keys
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app: Any = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started")
        from sluice.serving.server import url_of

        return url_of(self.host, self.port)

    @property
    def state(self) -> ServingState:
        """The running server's engine, watcher, telemetry and stores (same process)."""
        return self.app.state.serving  # type: ignore[no-any-return]

    def start(self, timeout: float = 60) -> ServingHandle:
        import uvicorn

        from sluice.serving.app import create_app
        from sluice.serving.server import bind

        self.app = create_app(self.config, host=self.host, api_keys=self.api_keys)
        sock = bind(self.host, self.requested_port)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", access_log=False,
                                                     lifespan="on", timeout_keep_alive=30))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"sluice-serving-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the serving endpoint on port {self.port} exited while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the serving endpoint on port {self.port} did not start in {timeout} s")
            time.sleep(0.02)
        return self

    def wait_until_serving(self, version: str | None = None, timeout: float = 120) -> str:
        """Wait until a model (``version``, if given) is served; the version."""
        deadline = time.monotonic() + timeout
        while True:
            served = self.state.watcher.served_version()
            if served is not None and (version is None or served == version):
                return served
            if time.monotonic() > deadline:
                raise TimeoutError(f"no{' version ' + version if version else ' model'} served after {timeout} s: "
                                   f"{self.state.not_ready() if served is None else 'serving ' + served}")
            time.sleep(0.05)

    def reload(self, timeout: float = 300) -> str:
        """``POST /admin/reload`` (through HTTP, like any client)."""
        keys = self.state.api_keys
        return request_reload(self.url, keys[0] if keys else "", timeout=timeout)

    def stop(self, timeout: float = 60) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> ServingHandle:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
