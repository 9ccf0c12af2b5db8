"""``sluice serve``: an OpenAI-compatible server for ``models:/<name>@<alias>``.

Endpoints (``/v1/*`` and ``/admin/*`` need ``Authorization: Bearer <key>``
when ``SLUICE_SERVING_API_KEYS`` is set; ``/health`` and ``/metrics`` are open):

- ``POST /v1/chat/completions`` and ``POST /v1/completions`` — OpenAI's
  request and response shapes, ``stream: true`` as Server-Sent Events ending
  with ``data: [DONE]``; ``max_tokens`` (or ``max_completion_tokens``),
  ``temperature`` (0: greedy; OpenAI's default 1), ``top_p``, ``stop``
  (string or up to 4), ``seed``, ``stream_options.include_usage``, and
  vLLM's ``ignore_eos`` (for load tests); ``n`` must be 1. Other OpenAI fields
  are accepted and ignored.
- ``GET /v1/models``, ``GET /health`` (503 with the reason while nothing is
  served), ``GET /metrics`` (Prometheus).
- ``POST /v1/feedback`` — ``{"response_id", "rating": 1..5, "preferred"?,
  "comment"?}``, see :mod:`sluice.serving.feedback`.
- ``POST /admin/reload`` — check the alias now; answers once the version it
  names is served.
- ``POST /v1/load_lora_adapter`` / ``POST /v1/unload_lora_adapter`` — vLLM's,
  see :mod:`sluice.serving.adapter_routes`. A request's ``model`` picks
  ``<name>``, ``<name>@<alias>`` (``serving.alias`` and ``extra_aliases``),
  ``<name>/<version>`` or a loaded adapter (:mod:`sluice.serving.adapters`).

Every answer carries ``X-Sluice-Model-Version``: the version that generated
it (a swap never splits a request). Errors are OpenAI-shaped:
``{"error": {"message", "type", "param", "code"}}``.

Under overload, at most ``serving.max_queued_requests`` requests wait for a
batch; more are answered 429 with ``Retry-After`` (OpenAI clients retry them).
A client that disconnects cancels its request, streamed or not: a waiting one
leaves the queue, a running one stops at the next token. Both are counted in
``/metrics`` (see :mod:`sluice.serving.telemetry`).

This module assembles the app (:func:`create_app`): the server's state, its
lifespan, the error handlers and the metrics middleware. The request shapes
are in :mod:`sluice.serving.api`, the endpoints in :mod:`sluice.serving.routes`
(generation in :mod:`sluice.serving.generation`), hosts, keys and the socket in
:mod:`sluice.serving.server`; :func:`run` serves it under uvicorn (``sluice serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sluice.core.config import SluiceConfig
from sluice.core.private_files import private_dir
from sluice.core.request_log import REQUEST_LOG
from sluice.serving.adapter_routes import adapter_routes
from sluice.serving.adapters import ServedModels
from sluice.serving.api import ApiError
from sluice.serving.engine import Engine
from sluice.serving.feedback import FeedbackStore
from sluice.serving.model_source import AliasWatcher
from sluice.serving.routes import ENDPOINTS, open_routes, protected_routes
from sluice.serving.server import api_keys_for, bind, url_of
from sluice.serving.state import ServingState
from sluice.serving.telemetry import RequestLog, Telemetry

log = logging.getLogger("sluice.serving")


def create_app(config: SluiceConfig, *, host: str | None = None, api_keys: list[str] | None = None) -> FastAPI:
    """The FastAPI app serving ``models:/<registry.model_name>@<serving.alias>``.

    ``host`` is where it will listen (default ``serving.host``): anything but loopback needs API
    keys (``api_keys``, default from SLUICE_SERVING_API_KEYS). The engine and the alias watcher
    start with the app's lifespan (uvicorn runs it), so the server answers at once and serves
    the first version as soon as it is loaded.
    """
    if config.serving.backend == "vllm":  # the same front door, generation forwarded to vLLM replicas
        from sluice.serving.vllm.app import create_vllm_app

        return create_vllm_app(config, host=host, api_keys=api_keys)
    # OpenMP's idle threads spin for a while after each op by default; on a few cores that takes the
    # CPU from the event loop between decode steps (measured on 2 cores: 1.5 s instead of 0.14 s per
    # request). Passive waiting must be chosen before torch loads OpenMP; a caller's setting wins.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return assemble_app(_build_state(config, api_keys_for(host or config.serving.host, api_keys)))


def assemble_app(state: ServingState, *, lora_routes: bool = True) -> FastAPI:
    """The app around a server's state: lifespan, OpenAI-shaped errors, the routes, metrics (shared by
    ``sluice serve`` and the engine server, :mod:`sluice.serving.engine_server`); ``lora_routes``: with
    ``/v1/load_lora_adapter`` and ``/v1/unload_lora_adapter``."""
    app = FastAPI(title="Sluicegate serving", version="1", lifespan=_lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.serving = state
    app.include_router(open_routes)
    app.include_router(protected_routes)
    if lora_routes:
        app.include_router(adapter_routes)
    return with_errors_and_metrics(app, state.telemetry)


def with_errors_and_metrics(app: FastAPI, telemetry: Telemetry) -> FastAPI:
    """OpenAI-shaped errors and the request metrics on ``app`` (every front door: built-in and vLLM)."""
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(_MetricsMiddleware, telemetry=telemetry)
    return app


def served_aliases(config: SluiceConfig) -> list[str]:
    """The aliases watched beside ``serving.alias``: ``serving.extra_aliases``, and ``challenger`` when the
    promotion rollout is a canary or a shadow (its share of traffic would otherwise reach nothing)."""
    from sluice.core.registry.client import CHALLENGER

    extra = list(config.serving.extra_aliases)
    if config.promotion.rollout in ("canary", "shadow") and CHALLENGER not in extra:
        extra.append(CHALLENGER)
    return extra


def _build_state(config: SluiceConfig, api_keys: list[str]) -> ServingState:
    """The engine, the watcher that loads the alias's versions into it, telemetry and the stores
    under ``serving.state_dir``; nothing runs until the lifespan starts."""
    from sluice.core.registry.client import ModelRegistry
    from sluice.core.registry.tracking import tracking_target

    serving = config.serving
    state_dir = private_dir(Path(serving.state_dir).resolve(), tighten_existing=True)  # prompts, answers
    name = config.registry.model_name
    telemetry = Telemetry(name, serving.alias)
    engine = new_engine(config, telemetry)
    served = ServedModels(engine, serving.max_adapters)
    watcher = AliasWatcher(engine=engine, served=served, registry=ModelRegistry(tracking_target(config.tracking), name),
                           alias=serving.alias, extra_aliases=served_aliases(config), models_dir=state_dir / "models",
                           interval=serving.watch_seconds, on_served=telemetry.alias_served)
    telemetry.adapters.set_function(served.loaded_count)
    return ServingState(config=config, engine=engine, watcher=watcher, served=served, telemetry=telemetry,
                        feedback=FeedbackStore(state_dir / "feedback.db"),
                        request_log=RequestLog(state_dir / REQUEST_LOG, config.data.cleaning.pii_patterns),
                        api_keys=api_keys)


def new_engine(config: SluiceConfig, telemetry: Telemetry) -> Engine:
    """The engine as ``serving`` configures it, reporting to ``telemetry``."""
    serving = config.serving
    engine = Engine(max_batch_size=serving.max_batch_size, batch_wait_ms=serving.batch_wait_ms,
                    batching=serving.batching, max_queued_requests=serving.max_queued_requests,
                    on_batch=telemetry.batch_size.observe, on_swap=telemetry.model_swapped,
                    on_first_token=telemetry.time_to_first_token.observe,
                    on_inter_token=telemetry.inter_token_latency.observe, on_cancel=telemetry.request_cancelled)
    telemetry.track_queue(lambda: engine.queued, engine.max_queued_requests, lambda: engine.running)
    return engine


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: ServingState = app.state.serving
    state.engine.start()
    state.watcher.start()
    try:
        yield
    finally:
        await asyncio.to_thread(state.watcher.stop)
        await asyncio.to_thread(state.engine.stop)
        state.feedback.close()


# ------------------------------------------------------------------ every error in OpenAI's shape


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(ApiError(error.status_code, str(error.detail), code=None).body(),
                        status_code=error.status_code, headers=getattr(error, "headers", None))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error on %s", request.url.path)
    return JSONResponse(ApiError(500, f"internal error: {type(error).__name__}: {error}",
                                 type="server_error").body(), status_code=500)


class _MetricsMiddleware:
    """Counts every request by endpoint and status, timing it until its last byte."""

    def __init__(self, app: Any, telemetry: Telemetry):
        self.app, self.telemetry = app, telemetry

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = scope["path"] if scope["path"] in ENDPOINTS else "other"
        started, status = time.perf_counter(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.telemetry.requests.labels(endpoint, str(status)).inc()
            self.telemetry.latency.labels(endpoint).observe(time.perf_counter() - started)


def run(config: SluiceConfig, host: str | None = None, port: int | None = None, *,
        announce: Callable[[str], None] = print, log_level: str = "warning") -> None:
    """Serve until interrupted (SIGINT/SIGTERM finish running requests first). ``announce``
    gets the URL once the socket listens."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    host = host or config.serving.host
    port = config.serving.port if port is None else port
    app = create_app(config, host=host)
    sock = bind(host, port)
    url = url_of(host, sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                                           timeout_keep_alive=30))
    announce(f"serving models:/{config.registry.model_name}@{config.serving.alias} at {url}/v1 "
             f"(health: {url}/health, metrics: {url}/metrics)")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled, after shutting down
        server.run(sockets=[sock])
