"""The server's endpoints. ``/health`` and ``/metrics`` are open; the ``/v1/*`` and ``/admin/*``
ones need ``Authorization: Bearer <key>`` when the server has API keys.

Each handler gets the app's :class:`~sluice.serving.state.ServingState` through a FastAPI
dependency; the generation endpoints also log the requests they reject.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sluice.serving.api import ApiError, ChatRequest, CompletionRequest, FeedbackRequest, read_body, version_headers
from sluice.serving.feedback import UnknownResponse
from sluice.serving.generation import generate
from sluice.serving.state import ServingState
from sluice.serving.telemetry import redact_texts

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/feedback", "/admin/reload", "/health",
             "/metrics", "/v1/load_lora_adapter", "/v1/unload_lora_adapter")


def _serving_state(request: Request) -> ServingState:
    return request.app.state.serving  # type: ignore[no-any-return]  # set by create_app


State = Annotated[ServingState, Depends(_serving_state)]


async def authorize(request: Request, state: State) -> None:
    """401 unless the request carries one of the server's API keys (none configured: open)."""
    if not state.api_keys:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(given.strip().encode(), k.encode())
                                             for k in state.api_keys):
        raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                       type="invalid_request_error", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})


open_routes = APIRouter()
protected_routes = APIRouter(dependencies=[Depends(authorize)])


# ------------------------------------------------------------------ open endpoints


@open_routes.get("/health")
async def health(state: State) -> JSONResponse:
    status, version = state.watcher.status, state.watcher.served_version()
    body: dict[str, Any] = {
        "status": "ok" if version else "unavailable", "model": state.model_name,
        "alias": state.config.serving.alias, "uri": state.uri, "version": version,
        "alias_version": status.alias_version, "loading": status.loading,
        "last_check": datetime.fromtimestamp(status.last_check, UTC).isoformat() if status.last_check else None,
        "last_error": status.last_error}
    if status.extra:  # the extra aliases: the version each names, and why one is not served
        body["aliases"] = {alias: {"version": v, "served": state.watcher.served_version(alias),
                                   "error": status.extra_errors.get(alias)} for alias, v in status.extra.items()}
    if version is None:
        body["reason"] = state.not_ready()
        return JSONResponse(body, status_code=503)
    if status.last_check is not None and status.alias_version != version and not status.loading:
        body["warning"] = (f"{state.uri} names version {status.alias_version or 'nothing'}; still serving "
                           f"version {version}")
    return JSONResponse(body, headers=version_headers(version))


@open_routes.get("/metrics")
async def metrics(state: State) -> Response:
    payload, content_type = state.telemetry.render()
    return Response(payload, media_type=content_type)


# ------------------------------------------------------------------ generation

_GenerationHandler = Callable[[ServingState, Request, float], Awaitable[Response]]


def _logged(endpoint: str) -> Callable[[_GenerationHandler], Callable[[Request], Awaitable[Response]]]:
    """The handler, timed from arrival, with the requests it rejects written to the request log."""

    def wrap(handler: _GenerationHandler) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            arrived = time.perf_counter()
            state = _serving_state(request)
            try:
                return await handler(state, request, arrived)
            except ApiError as error:
                await asyncio.to_thread(state.record_rejection, endpoint, error, arrived)
                raise

        handle.__name__ = handler.__name__  # not functools.wraps: FastAPI would read the handler's signature
        return handle

    return wrap


@protected_routes.post("/v1/chat/completions")
@_logged("/v1/chat/completions")
async def chat_completions(state: ServingState, request: Request, arrived: float) -> Response:
    body = await read_body(request, ChatRequest, state.config.serving.max_body_bytes)
    param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    return await generate(state, request, kind="chat", endpoint="/v1/chat/completions", prompt=messages, body=body,
                          requested_max_tokens=body.max_completion_tokens or body.max_tokens,
                          max_tokens_param=param, arrived=arrived)


@protected_routes.post("/v1/completions")
@_logged("/v1/completions")
async def completions(state: ServingState, request: Request, arrived: float) -> Response:
    body = await read_body(request, CompletionRequest, state.config.serving.max_body_bytes)
    if isinstance(body.prompt, list) and len(body.prompt) != 1:
        raise ApiError(400, f"one prompt per request (got {len(body.prompt)})", param="prompt",
                       code="invalid_value")
    prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
    return await generate(state, request, kind="completion", endpoint="/v1/completions", prompt=prompt, body=body,
                          requested_max_tokens=body.max_tokens, max_tokens_param="max_tokens", arrived=arrived)


# ------------------------------------------------------------------ the rest of the API


@protected_routes.get("/v1/models")
async def models(state: State) -> JSONResponse:
    from sluice.serving.adapter_routes import model_cards  # it imports this module (authorize)

    return JSONResponse({"object": "list", "data": model_cards(state)},
                        headers=version_headers(state.watcher.served_version()))


@protected_routes.post("/v1/feedback")
async def feedback(request: Request, state: State) -> JSONResponse:
    body = await read_body(request, FeedbackRequest, state.config.serving.max_body_bytes)
    texts = [t for t in (body.preferred, body.comment) if t is not None]
    redacted = iter(await asyncio.to_thread(redact_texts, texts, state.pii_patterns))
    preferred = next(redacted) if body.preferred is not None else None
    comment = next(redacted) if body.comment is not None else None
    try:
        feedback_id = await asyncio.to_thread(state.feedback.add_feedback, body.response_id, body.rating,
                                              preferred, comment)
    except UnknownResponse:
        raise ApiError(404, f"no response with id {body.response_id!r} was served here", param="response_id",
                       code="response_not_found") from None
    return JSONResponse({"id": feedback_id, "object": "feedback", "response_id": body.response_id,
                         "rating": body.rating}, status_code=201)


@protected_routes.post("/admin/reload")
async def reload(state: State) -> JSONResponse:
    before = state.watcher.served_version()
    try:
        version = await asyncio.to_thread(state.watcher.check_now)
    except Exception as error:
        raise ApiError(502, f"reload failed: {error}; still serving version {before or 'none'}",
                       type="server_error", code="reload_failed") from None
    if version is None:
        raise ApiError(503, state.not_ready(), type="server_error", code="model_not_ready")
    return JSONResponse({"model": state.model_name, "alias": state.config.serving.alias, "version": version,
                         "previous": before, "changed": version != before}, headers=version_headers(version))
