"""``sluice serve``: an OpenAI-compatible server for ``models:/<name>@<alias>``.

Endpoints (``/v1/*`` and ``/admin/*`` need ``Authorization: Bearer <key>``
when ``SLUICE_SERVING_API_KEYS`` is set; ``/health`` and ``/metrics`` are open):

- ``POST /v1/chat/completions`` and ``POST /v1/completions`` — OpenAI's
  request and response shapes, ``stream: true`` as Server-Sent Events ending
  with ``data: [DONE]``; ``max_tokens`` (or ``max_completion_tokens``),
  ``temperature`` (0: greedy; OpenAI's default 1), ``top_p``, ``stop``
  (string or up to 4), ``seed``, ``stream_options.include_usage``; ``n`` must
  be 1. Other OpenAI fields are accepted and ignored.
- ``GET /v1/models``, ``GET /health`` (503 with the reason while nothing is
  served), ``GET /metrics`` (Prometheus).
- ``POST /v1/feedback`` — ``{"response_id", "rating": 1..5, "preferred"?,
  "comment"?}``, see :mod:`sluice.serving.feedback`.
- ``POST /admin/reload`` — check the alias now; answers once the version it
  names is served.

Every answer carries ``X-Sluice-Model-Version``: the version that generated
it (a swap never splits a request). Errors are OpenAI-shaped:
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sluice.config import SluiceConfig
from sluice.serving.engine import (
    Delta,
    Engine,
    EngineStopped,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    LoadedModel,
    PromptTooLong,
    Started,
)
from sluice.serving.feedback import FeedbackStore, UnknownResponse
from sluice.serving.model_source import AliasWatcher
from sluice.serving.telemetry import RequestLog, Telemetry, redact_prompt, redact_texts

log = logging.getLogger("sluice.serving")
API_KEYS_VARIABLE = "SLUICE_SERVING_API_KEYS"
VERSION_HEADER = "X-Sluice-Model-Version"
MAX_STOP_SEQUENCES = 4
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/feedback", "/admin/reload", "/health",
             "/metrics")


class ServingError(RuntimeError):
    """The server cannot start as configured; the message says what to do."""


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# ------------------------------------------------------------------ request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


class _Generation(_Body):
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = None


class ChatRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class CompletionRequest(_Generation):
    prompt: str | list[str]


class FeedbackRequest(_Body):
    response_id: str = Field(min_length=1)
    rating: StrictInt = Field(ge=1, le=5)
    preferred: str | None = None
    comment: str | None = Field(None, max_length=10_000)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal", "json"}


def _validation_error(error: ValidationError) -> ApiError:
    first = error.errors()[0]
    parts = [str(p) for p in first["loc"] if isinstance(p, int) or (
        re.fullmatch(r"[a-z_]+", str(p)) and str(p).split("[")[0].lower() not in _TYPE_TAGS)]
    param = ".".join(parts) or None
    if first["type"] == "missing":
        return ApiError(400, f"'{param}' is required", param=param, code="missing_required_parameter")
    message = first["msg"].removeprefix("Value error, ")
    return ApiError(400, f"invalid '{param}': {message}" if param else message, param=param, code="invalid_value")


def _parse(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _validation_error(error) from None


async def _read_json(request: Any, limit: int) -> dict[str, Any]:
    """The JSON object in the body; 413 past ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    too_large = ApiError(413, f"request body is larger than {limit} bytes (serving.max_body_bytes)",
                         code="request_too_large")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large
        except ValueError:
            raise ApiError(400, f"invalid Content-Length header {declared!r}") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ApiError(400, f"request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    return data


# ------------------------------------------------------------------ the server's state


@dataclass
class ServingState:
    config: SluiceConfig
    engine: Engine
    watcher: AliasWatcher
    telemetry: Telemetry
    feedback: FeedbackStore
    request_log: RequestLog
    api_keys: list[str]
    started: float = field(default_factory=time.time)

    @property
    def model_name(self) -> str:
        return self.config.registry.model_name

    @property
    def uri(self) -> str:
        return self.watcher.uri

    def not_ready(self) -> str:
        """Why nothing is served yet."""
        status, serving = self.watcher.status, self.config.serving
        if status.loading:
            return f"loading version {status.loading} of {self.uri}"
        if status.last_error:
            return f"nothing served yet: {status.last_error}"
        if status.last_check is None:
            return f"starting: {self.uri} has not been looked up yet"
        return (f"no version of {self.uri} exists yet: waiting for a first one (the alias is checked every "
                f"{serving.watch_seconds:g} s; POST /admin/reload checks at once)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def api_keys_from_environment() -> list[str]:
    return [key.strip() for key in os.environ.get(API_KEYS_VARIABLE, "").split(",") if key.strip()]


def _check_backend(backend: str) -> None:
    if backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise ServingError("serving.backend is 'vllm' but vllm is not installed: pip install sluicegate[vllm] "
                               "on a CUDA machine, or set serving.backend=transformers") from None
        raise ServingError("serving.backend 'vllm': vllm is installed, but this version of Sluicegate serves only "
                           "with the built-in engine; set serving.backend=transformers")


# ------------------------------------------------------------------ the app


def create_app(config: SluiceConfig, *, host: str | None = None, api_keys: list[str] | None = None) -> FastAPI:
    """The FastAPI app serving ``models:/<registry.model_name>@<serving.alias>``.

    ``host`` is where it will listen (default ``serving.host``): anything but loopback needs API
    keys (``api_keys``, default from SLUICE_SERVING_API_KEYS). The engine and the alias watcher
    start with the app's lifespan (uvicorn runs it), so the server answers at once and serves
    the first version as soon as it is loaded.
    """
    from sluice.tracking import tracking_target

    serving = config.serving
    _check_backend(serving.backend)
    # OpenMP's idle threads spin for a while after each op by default; on a few cores that takes the
    # CPU from the event loop between decode steps (measured on 2 cores: 1.5 s instead of 0.14 s per
    # request). Passive waiting must be chosen before torch loads OpenMP; a caller's setting wins.
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keys = api_keys_from_environment() if api_keys is None else [k for k in api_keys if k]
    host = host or serving.host
    if not keys and not _is_loopback(host):
        raise ServingError(f"refusing to serve on {host} without API keys: set {API_KEYS_VARIABLE}=key1,key2 "
                           "(clients send 'Authorization: Bearer <key>'), or bind 127.0.0.1")
    state_dir = Path(serving.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    name = config.registry.model_name
    telemetry = Telemetry(name, serving.alias)
    engine = Engine(max_batch_size=serving.max_batch_size, batch_wait_ms=serving.batch_wait_ms,
                    on_batch=telemetry.batch_size.observe, on_swap=telemetry.model_swapped,
                    on_first_token=telemetry.time_to_first_token.observe, on_queue=telemetry.queue_depth.set)
    watcher = AliasWatcher(engine=engine, tracking_uri=tracking_target(config.tracking).tracking_uri,
                           model_name=name, alias=serving.alias, models_dir=state_dir / "models",
                           interval=serving.watch_seconds)
    state = ServingState(config=config, engine=engine, watcher=watcher, telemetry=telemetry,
                         feedback=FeedbackStore(state_dir / "feedback.db"),
                         request_log=RequestLog(state_dir / "requests.jsonl", config.data.cleaning.pii_patterns),
                         api_keys=keys)
    pii = config.data.cleaning.pii_patterns

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start()
        watcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(watcher.stop)
            await asyncio.to_thread(engine.stop)
            state.feedback.close()

    app = FastAPI(title="Sluicegate serving", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.serving = state

    def version_headers(version: str | None) -> dict[str, str]:
        return {VERSION_HEADER: version} if version else {}

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(ApiError(error.status_code, str(error.detail), code=None).body(),
                            status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return JSONResponse(ApiError(500, f"internal error: {type(error).__name__}: {error}",
                                     type="server_error").body(), status_code=500)

    async def authorize(request: Request) -> None:
        if not keys:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(given.strip().encode(), k.encode())
                                                 for k in keys):
            raise ApiError(401, "missing or invalid API key: send 'Authorization: Bearer <key>'",
                           type="invalid_request_error", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    protected = APIRouter(dependencies=[Depends(authorize)])

    # -------------------------------------------------- open endpoints

    @app.get("/health")
    async def health() -> JSONResponse:
        status, version = watcher.status, engine.version
        body: dict[str, Any] = {
            "status": "ok" if version else "unavailable", "model": name, "alias": serving.alias, "uri": state.uri,
            "version": version, "alias_version": status.alias_version, "loading": status.loading,
            "last_check": datetime.fromtimestamp(status.last_check, UTC).isoformat() if status.last_check else None,
            "last_error": status.last_error}
        if version is None:
            body["reason"] = state.not_ready()
            return JSONResponse(body, status_code=503)
        if status.alias_version != version and not status.loading:
            body["warning"] = (f"{state.uri} names version {status.alias_version or 'nothing'}; still serving "
                               f"version {version}")
        return JSONResponse(body, headers=version_headers(version))

    @app.get("/metrics")
    async def metrics() -> Response:
        payload, content_type = telemetry.render()
        return Response(payload, media_type=content_type)

    # -------------------------------------------------- generation

    def served_model() -> LoadedModel:
        model = engine.model
        if model is None:
            raise ApiError(503, state.not_ready(), type="server_error", code="model_not_ready",
                           headers={"Retry-After": str(max(1, int(serving.watch_seconds)))})
        return model

    def check_common(body: _Generation, max_tokens: int | None, param: str) -> tuple[int, list[str]]:
        if body.model and body.model not in (name, f"{name}@{serving.alias}", state.uri):
            raise ApiError(404, f"model {body.model!r} is not served here; this server serves {name!r} "
                                f"({state.uri})", param="model", code="model_not_found")
        if body.n not in (None, 1):
            raise ApiError(400, f"n={body.n} is not supported: this server returns one choice per request (n=1)",
                           param="n", code="invalid_value")
        if max_tokens is not None and max_tokens > serving.max_tokens_limit:
            raise ApiError(400, f"{param}={max_tokens} is more than this server allows "
                                f"({serving.max_tokens_limit}, serving.max_tokens_limit)", param=param,
                           code="invalid_value")
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ApiError(400, f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}", param="stop",
                           code="invalid_value")
        chosen = max_tokens if max_tokens is not None else min(serving.default_max_tokens, serving.max_tokens_limit)
        return chosen, [s for s in stops if s]

    async def tokenize(model: LoadedModel, prompt: list[dict[str, str]] | str, max_tokens: int,
                       param: str) -> list[int]:
        try:
            ids = await asyncio.to_thread(model.encode, prompt)
        except Exception as error:  # e.g. the chat template rejects the roles' order
            raise ApiError(400, f"cannot apply model version {model.version}'s chat template: {error}",
                           param=param, code="invalid_value") from None
        if len(ids) > serving.max_prompt_tokens:
            raise ApiError(400, f"the prompt is {len(ids)} tokens long; this server accepts at most "
                                f"{serving.max_prompt_tokens} (serving.max_prompt_tokens)", param=param,
                           code="context_length_exceeded")
        if len(ids) + max_tokens > model.context_length:
            raise ApiError(400, f"the prompt ({len(ids)} tokens) plus max_tokens ({max_tokens}) exceeds the "
                                f"model's context of {model.context_length} tokens", param=param,
                           code="context_length_exceeded")
        return ids

    def failure(error: BaseException) -> ApiError:
        if isinstance(error, ApiError):
            return error
        if isinstance(error, PromptTooLong):
            return ApiError(400, str(error), code="context_length_exceeded")
        if isinstance(error, EngineStopped):
            return ApiError(503, str(error), type="server_error", code="shutting_down")
        return ApiError(500, f"generation failed: {type(error).__name__}: {error}", type="server_error")

    def record(*, response_id: str, endpoint: str, kind: str, prompt: list[dict[str, str]] | str,
               done: Finished, arrived: float, stream: bool, params: dict[str, Any]) -> None:
        """Log the request and keep the answer for feedback (runs on a worker thread)."""
        redacted_prompt, (completion,) = redact_prompt(prompt, pii, [done.text])
        state.feedback.record_response(response_id, endpoint=kind, model_version=done.version,
                                       prompt=redacted_prompt, completion=completion,
                                       finish_reason=done.finish_reason)
        state.request_log.write({
            "id": response_id, "time": datetime.now(UTC).isoformat(), "endpoint": endpoint, "status": 200,
            "model": name, "model_version": done.version, "stream": stream,
            "latency_ms": round(1000 * (time.perf_counter() - arrived), 2),
            "time_to_first_token_ms": round(1000 * (done.first_token_at - arrived), 2),
            "batch_size": done.batch_size, "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens, "finish_reason": done.finish_reason, "params": params,
            "prompt": redacted_prompt, "completion": completion}, redacted=True)

    def log_rejection(endpoint: str, error: ApiError, arrived: float) -> None:
        state.request_log.write({"id": None, "time": datetime.now(UTC).isoformat(), "endpoint": endpoint,
                                 "status": error.status, "model": name, "model_version": engine.version,
                                 "latency_ms": round(1000 * (time.perf_counter() - arrived), 2),
                                 "error": {"message": error.message, "code": error.code, "param": error.param}},
                                redacted=True)

    async def generate(*, kind: Literal["chat", "completion"], endpoint: str, prompt: list[dict[str, str]] | str,
                       body: _Generation, max_tokens: int, stops: list[str], prompt_ids: list[int],
                       encoded_by: str, arrived: float) -> Response:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown): nobody is listening
                loop.call_soon_threadsafe(events.put_nowait, event)

        temperature = 1.0 if body.temperature is None else body.temperature
        top_p = 1.0 if body.top_p is None else body.top_p
        request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, emit=emit, temperature=temperature,
                                    top_p=top_p, stop=stops, seed=body.seed, stream=bool(body.stream),
                                    prompt_ids=prompt_ids, encoded_by=encoded_by, arrived=arrived)
        params = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stops,
                  "seed": body.seed}
        try:
            engine.submit(request)
        except EngineStopped as error:
            raise failure(error) from None
        first = await events.get()
        if isinstance(first, Failed):
            raise failure(first.error)
        assert isinstance(first, Started)
        prefix = "chatcmpl" if kind == "chat" else "cmpl"
        response_id, created = f"{prefix}-{uuid.uuid4().hex}", int(time.time())
        fingerprint = f"{name}-v{first.version}"

        def usage(done: Finished) -> dict[str, int]:
            return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
                    "total_tokens": done.prompt_tokens + done.completion_tokens}

        def count(done: Finished) -> None:
            telemetry.prompt_tokens.inc(done.prompt_tokens)
            telemetry.completion_tokens.inc(done.completion_tokens)

        def save(done: Finished, stream: bool) -> Any:
            return asyncio.to_thread(record, response_id=response_id, endpoint=endpoint, kind=kind, prompt=prompt,
                                     done=done, arrived=arrived, stream=stream, params=params)

        if not body.stream:
            while True:
                event = await events.get()
                if isinstance(event, Failed):
                    raise failure(event.error)
                if isinstance(event, Finished):
                    break
            done = event
            count(done)
            await save(done, stream=False)
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": None,
                 "finish_reason": done.finish_reason} if kind == "chat" else
                {"index": 0, "text": done.text, "logprobs": None, "finish_reason": done.finish_reason})
            return JSONResponse({"id": response_id, "object": "chat.completion" if kind == "chat" else
                                 "text_completion", "created": created, "model": name,
                                 "system_fingerprint": fingerprint, "choices": [choice], "usage": usage(done)},
                                headers=version_headers(done.version))

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        object_name = "chat.completion.chunk" if kind == "chat" else "text_completion"

        def chunk(text: str | None, finish_reason: str | None = None, role: bool = False) -> str:
            if kind == "chat":
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
                    {"content": text} if text is not None else {})
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
            data = {"id": response_id, "object": object_name, "created": created, "model": name,
                    "system_fingerprint": fingerprint, "choices": [choice]}
            return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

        async def stream() -> AsyncIterator[str]:
            finished = False
            try:
                if kind == "chat":
                    yield chunk(None, role=True)
                while True:
                    event = await events.get()
                    if isinstance(event, Delta):
                        yield chunk(event.text)
                    elif isinstance(event, Finished):
                        finished = True
                        count(event)
                        yield chunk(None, finish_reason=event.finish_reason)
                        if include_usage:
                            data = {"id": response_id, "object": object_name, "created": created, "model": name,
                                    "system_fingerprint": fingerprint, "choices": [], "usage": usage(event)}
                            yield f"data: {json.dumps(data)}\n\n"
                        await save(event, stream=True)
                        yield "data: [DONE]\n\n"
                        return
                    elif isinstance(event, Failed):
                        finished = True
                        yield f"data: {json.dumps(failure(event.error).body())}\n\n"
                        yield "data: [DONE]\n\n"
                        return
            finally:
                if not finished:
                    request.cancelled = True  # the client went away: its row leaves the batch

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={**version_headers(first.version), "Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    def logged(endpoint: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
            async def run(request: Request) -> Response:
                arrived = time.perf_counter()
                try:
                    return await handler(request, arrived)  # type: ignore[no-any-return]
                except ApiError as error:
                    await asyncio.to_thread(log_rejection, endpoint, error, arrived)
                    raise

            run.__name__ = handler.__name__
            return run

        return wrap

    @protected.post("/v1/chat/completions")
    @logged("/v1/chat/completions")
    async def chat_completions(request: Request, arrived: float) -> Response:
        body: ChatRequest = _parse(ChatRequest, await _read_json(request, serving.max_body_bytes))
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        max_tokens, stops = check_common(body, body.max_completion_tokens or body.max_tokens, param)
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
        model = served_model()
        ids = await tokenize(model, messages, max_tokens, "messages")
        return await generate(kind="chat", endpoint="/v1/chat/completions", prompt=messages, body=body,
                              max_tokens=max_tokens, stops=stops, prompt_ids=ids, encoded_by=model.version,
                              arrived=arrived)

    @protected.post("/v1/completions")
    @logged("/v1/completions")
    async def completions(request: Request, arrived: float) -> Response:
        body: CompletionRequest = _parse(CompletionRequest, await _read_json(request, serving.max_body_bytes))
        if isinstance(body.prompt, list) and len(body.prompt) != 1:
            raise ApiError(400, f"one prompt per request (got {len(body.prompt)})", param="prompt",
                           code="invalid_value")
        prompt = body.prompt if isinstance(body.prompt, str) else body.prompt[0]
        max_tokens, stops = check_common(body, body.max_tokens, "max_tokens")
        model = served_model()
        ids = await tokenize(model, prompt, max_tokens, "prompt")
        return await generate(kind="completion", endpoint="/v1/completions", prompt=prompt, body=body,
                              max_tokens=max_tokens, stops=stops, prompt_ids=ids, encoded_by=model.version,
                              arrived=arrived)

    @protected.get("/v1/models")
    async def models() -> JSONResponse:
        version = engine.version
        data = [{"id": name, "object": "model", "created": int(state.started), "owned_by": "sluicegate",
                 "root": state.uri, "version": version}]
        return JSONResponse({"object": "list", "data": data}, headers=version_headers(version))

    @protected.post("/v1/feedback")
    async def feedback(request: Request) -> JSONResponse:
        body: FeedbackRequest = _parse(FeedbackRequest, await _read_json(request, serving.max_body_bytes))
        texts = [t for t in (body.preferred, body.comment) if t is not None]
        redacted = iter(await asyncio.to_thread(redact_texts, texts, pii))
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

    @protected.post("/admin/reload")
    async def reload() -> JSONResponse:
        before = engine.version
        try:
            version = await asyncio.to_thread(watcher.check_now)
        except Exception as error:
            raise ApiError(502, f"reload failed: {error}; still serving version {before or 'none'}",
                           type="server_error", code="reload_failed") from None
        if version is None:
            raise ApiError(503, state.not_ready(), type="server_error", code="model_not_ready")
        return JSONResponse({"model": name, "alias": serving.alias, "version": version, "previous": before,
                             "changed": version != before}, headers=version_headers(version))

    app.include_router(protected)
    app.add_middleware(_MetricsMiddleware, telemetry=telemetry)
    return app


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


# ------------------------------------------------------------------ running it


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
