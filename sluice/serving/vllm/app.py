"""The front door in backend vllm (``serving.backend: vllm``): the same server as with the built-in
engine (auth, limits, request log with PII redaction, feedback, ``X-Sluice-Model-Version``,
``/metrics``), with generation forwarded to engine replicas that follow the aliases.

:func:`create_vllm_app` is what :func:`sluice.serving.app.create_app` returns for this backend.
It reuses the built-in server's API-key check, feedback endpoint, error handlers and metrics
middleware; its own endpoints are generation (:mod:`~sluice.serving.vllm.proxy`), ``/health``,
``/metrics`` (merged with every replica's, :mod:`~sluice.serving.vllm.metrics`), ``/v1/models``
and ``/admin/reload``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sluice.core.config import SluiceConfig
from sluice.core.private_files import private_dir
from sluice.core.request_log import REQUEST_LOG
from sluice.serving.api import ApiError, version_headers
from sluice.serving.canary import ChallengerShares, RoutedApiError
from sluice.serving.feedback import FeedbackStore
from sluice.serving.server import ServingError, api_keys_for
from sluice.serving.telemetry import RequestLog, Telemetry, redact_prompt
from sluice.serving.vllm.follower import AliasFollower
from sluice.serving.vllm.metrics import merge_metrics, scrape
from sluice.serving.vllm.plan import Route
from sluice.serving.vllm.proxy import Kind, forward, upstream_client
from sluice.serving.vllm.replicas import EngineCommand
from sluice.serving.vllm.router import Router

log = logging.getLogger("sluice.serving.vllm")


@dataclass
class VllmState:
    """The front door's parts. Named like :class:`~sluice.serving.state.ServingState` where the
    shared endpoints (API-key check, feedback) read them."""

    config: SluiceConfig
    router: Router
    follower: AliasFollower
    telemetry: Telemetry
    feedback: FeedbackStore
    request_log: RequestLog
    api_keys: list[str]
    client: httpx.AsyncClient = field(default_factory=lambda: upstream_client())
    canary_shares: ChallengerShares = field(default_factory=ChallengerShares)  # @challenger's share, re-read
    started: float = field(default_factory=time.time)

    @property
    def model_name(self) -> str:
        return self.config.registry.model_name

    @property
    def aliases(self) -> list[str]:
        return self.follower.aliases

    @property
    def pii_patterns(self) -> dict[str, str]:
        return self.config.data.cleaning.pii_patterns

    def not_ready(self, alias: str) -> str:
        status, uri = self.follower.status[alias], self.follower.registry.uri(alias)
        if status.loading:
            return f"starting engines for version {status.loading} of {uri}"
        if status.last_error:
            return f"nothing served yet: {status.last_error}"
        if self.follower.last_check is None:
            return f"starting: {uri} has not been looked up yet"
        return f"no version of {uri} exists yet (POST /admin/reload checks at once)"

    def record_answer(self, *, response_id: str, endpoint: str, kind: Kind, prompt: list[dict[str, str]] | str,
                      text: str, finish_reason: str | None, version: str, arrived: float,
                      first_byte_at: float | None, stream: bool, params: dict[str, Any],
                      usage: dict[str, int] | None, replica: str | None,
                      route: dict[str, Any] | None = None) -> None:
        """Log the request and keep the answer for feedback (on a worker thread); ``route``: the alias that
        answered and whether the canary split chose it (the built-in engine's log fields)."""
        redacted_prompt, (completion,) = redact_prompt(prompt, self.pii_patterns, [text])
        self.feedback.record_response(response_id, endpoint=kind, model_version=version, prompt=redacted_prompt,
                                      completion=completion, finish_reason=finish_reason or "")
        usage = usage or {}
        self.request_log.write({
            "id": response_id, "time": datetime.now(UTC).isoformat(), "endpoint": endpoint, "status": 200,
            "model": self.model_name, "model_version": version, **(route or {}), "stream": stream, "backend": "vllm",
            "replica": replica, "latency_ms": round(1000 * (time.perf_counter() - arrived), 2),
            "time_to_first_token_ms": round(1000 * (first_byte_at - arrived), 2) if first_byte_at else None,
            "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "finish_reason": finish_reason, "params": params, "prompt": redacted_prompt, "completion": completion},
            redacted=True)

    def record_rejection(self, endpoint: str, error: ApiError, arrived: float) -> None:
        """Log a request answered with an error; one that failed after it was routed names its version and alias."""
        main = self.router.routes().get(self.aliases[0])
        routed = error if isinstance(error, RoutedApiError) else None
        self.request_log.write({"id": None, "time": datetime.now(UTC).isoformat(), "endpoint": endpoint,
                                "status": error.status, "model": self.model_name,
                                "model_version": routed.version if routed else main.version if main else None,
                                **(routed.route.log_fields() if routed else {}), "backend": "vllm",
                                "latency_ms": round(1000 * (time.perf_counter() - arrived), 2),
                                "error": {"message": error.message, "code": error.code, "param": error.param}},
                               redacted=True)


def _check_command(command: list[str]) -> None:
    if not command or shutil.which(command[0]) is None:
        raise ServingError(f"serving.vllm_command {command!r}: {command[0] if command else '(empty)'!r} is not an "
                           "executable on PATH. Install vLLM on the GPU machine (`pip install 'sluicegate[vllm]'`), "
                           "or set serving.backend=transformers for the built-in engine")


def build_state(config: SluiceConfig, api_keys: list[str]) -> VllmState:
    from sluice.core.registry.client import ModelRegistry
    from sluice.core.registry.tracking import tracking_target

    serving = config.serving
    _check_command(serving.vllm_command)
    state_dir = private_dir(Path(serving.state_dir).resolve(), tighten_existing=True)
    aliases = list(dict.fromkeys([serving.alias, *serving.extra_aliases]))
    telemetry = Telemetry(config.registry.model_name, serving.alias)
    router = Router(on_switch=lambda route: _on_switch(telemetry, serving.alias, route))
    engine = EngineCommand(command=list(serving.vllm_command), args=list(serving.vllm_args),
                           start_timeout_s=serving.vllm_start_timeout_s, max_loras=serving.max_adapters)
    follower = AliasFollower(registry=ModelRegistry(tracking_target(config.tracking), config.registry.model_name),
                             aliases=aliases, router=router, engine=engine, replicas=serving.vllm_replicas,
                             models_dir=state_dir / "models", log_dir=state_dir / "engines",
                             interval=serving.watch_seconds)
    return VllmState(config=config, router=router, follower=follower, telemetry=telemetry,
                     feedback=FeedbackStore(state_dir / "feedback.db"),
                     request_log=RequestLog(state_dir / REQUEST_LOG, config.data.cleaning.pii_patterns),
                     api_keys=api_keys)


def _on_switch(telemetry: Telemetry, main_alias: str, route: Route) -> None:
    if route.alias == main_alias:
        telemetry.model_swapped(route.version)


def create_vllm_app(config: SluiceConfig, *, host: str | None = None, api_keys: list[str] | None = None) -> FastAPI:
    from sluice.serving.app import with_errors_and_metrics
    from sluice.serving.routes import authorize, feedback

    state = build_state(config, api_keys_for(host or config.serving.host, api_keys))
    app = FastAPI(title="Sluicegate serving (vLLM backend)", version="1", lifespan=_lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.serving = state
    protected = APIRouter(dependencies=[Depends(authorize)])
    protected.add_api_route("/v1/chat/completions", _generation("chat", "/v1/chat/completions"), methods=["POST"])
    protected.add_api_route("/v1/completions", _generation("completion", "/v1/completions"), methods=["POST"])
    protected.add_api_route("/v1/models", _models, methods=["GET"])
    protected.add_api_route("/v1/feedback", feedback, methods=["POST"])
    protected.add_api_route("/admin/reload", _reload, methods=["POST"])
    app.add_api_route("/health", _health, methods=["GET"])
    app.add_api_route("/metrics", _metrics, methods=["GET"])
    app.include_router(protected)
    return with_errors_and_metrics(app, state.telemetry)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state: VllmState = app.state.serving
    state.follower.start()
    try:
        yield
    finally:
        await asyncio.to_thread(state.follower.stop)
        await state.client.aclose()
        state.feedback.close()


def _state(request: Request) -> VllmState:
    return request.app.state.serving  # type: ignore[no-any-return]


def _generation(kind: Kind, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        arrived, state = time.perf_counter(), _state(request)
        try:
            return await forward(state, request, kind=kind, endpoint=endpoint, arrived=arrived)
        except ApiError as error:
            await asyncio.to_thread(state.record_rejection, endpoint, error, arrived)
            raise

    handle.__name__ = f"{kind}_completions"
    return handle


async def _health(request: Request) -> JSONResponse:
    state = _state(request)
    routes, follower = state.router.routes(), state.follower
    aliases = {}
    for alias in state.aliases:
        route, status = routes.get(alias), follower.status[alias]
        aliases[alias] = {"version": route.version if route else None, "alias_version": status.alias_version,
                          "engines": route.set_key if route else None, "loading": status.loading,
                          "last_error": status.last_error}
    main = routes.get(state.aliases[0])
    replica_set = follower.sets.get(main.set_key) if main else None
    healthy = replica_set is not None and any(r.healthy for r in replica_set.replicas)
    body: dict[str, Any] = {
        "status": "ok" if healthy else "unavailable", "backend": "vllm", "model": state.model_name,
        "alias": state.aliases[0], "version": main.version if main else None, "aliases": aliases,
        "engines": {key: s.status() for key, s in follower.sets.items()},
        "last_check": datetime.fromtimestamp(follower.last_check, UTC).isoformat() if follower.last_check else None}
    if not healthy:
        body["reason"] = (state.not_ready(state.aliases[0]) if main is None else
                          f"every engine of {main.set_key} is down")
        return JSONResponse(body, status_code=503)
    return JSONResponse(body, headers=version_headers(main.version if main else None))


async def _metrics(request: Request) -> Response:
    state = _state(request)
    own, content_type = state.telemetry.render()
    targets = [(replica.name, replica.url) for s in list(state.follower.sets.values()) for replica in s.replicas
               if replica.healthy]
    return Response(merge_metrics(own, await scrape(state.client, targets)), media_type=content_type)


async def _models(request: Request) -> JSONResponse:
    state = _state(request)
    data = [{"id": f"{state.model_name}@{alias}", "object": "model", "created": int(state.started),
             "owned_by": "sluicegate", "root": state.follower.registry.uri(alias), "version": route.version,
             "parent": None} for alias, route in state.router.routes().items()]
    main = state.router.routes().get(state.aliases[0])
    return JSONResponse({"object": "list", "data": data}, headers=version_headers(main.version if main else None))


async def _reload(request: Request) -> JSONResponse:
    state = _state(request)
    main_alias = state.aliases[0]
    before = state.router.routes().get(main_alias)
    try:
        versions = await asyncio.to_thread(state.follower.check_now)
    except Exception as error:
        raise ApiError(502, f"reload failed: {error}; still serving version {before.version if before else 'none'}",
                       type="server_error", code="reload_failed") from None
    version = versions.get(main_alias)
    if version is None:
        raise ApiError(503, state.not_ready(main_alias), type="server_error", code="model_not_ready")
    return JSONResponse({"model": state.model_name, "alias": main_alias, "version": version,
                         "previous": before.version if before else None,
                         "changed": version != (before.version if before else None), "aliases": versions},
                        headers=version_headers(version))
