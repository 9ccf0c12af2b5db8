"""The generation path behind ``/v1/chat/completions`` and ``/v1/completions``: checking a
request against the server's limits, tokenizing its prompt, handing it to the engine, and
answering in OpenAI's shapes — one JSON body, or Server-Sent Events ending with ``data: [DONE]``.

The engine works on its own thread and reports each request's events (started, text, finished,
failed) through a callback; here they land in an asyncio queue that the answer reads.

A full engine queue is answered 429 with ``Retry-After``. A client that disconnects cancels its
request: until a non-streamed answer is sent, a task listens for the disconnect on the ASGI
channel; a streamed answer is cancelled by Starlette when its client goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sluice.core.config import ServingConfig
from sluice.serving.adapters import Lease, Target
from sluice.serving.api import ApiError, GenerationBody, version_headers
from sluice.serving.canary import Route, RoutedApiError, choose_route, resolve_route
from sluice.serving.engine import (
    Delta,
    EngineStopped,
    Event,
    Failed,
    Finished,
    GenerationRequest,
    LoadedModel,
    PromptTooLong,
    Started,
)
from sluice.serving.shadow import mirror_to_challenger
from sluice.serving.state import ServingState
from sluice.serving.version_prompts import with_version_system_prompt
from sluice.serving.waiting import QueueFull

MAX_STOP_SEQUENCES = 4
RETRY_AFTER_SECONDS = 1  # a full queue drains within a batch or two
Kind = Literal["chat", "completion"]


class _ClientGone:
    """Put on a request's event queue when its client disconnects."""


CLIENT_GONE = _ClientGone()
Received = Event | _ClientGone


# ------------------------------------------------------------------ before the engine


def _served_model(state: ServingState) -> LoadedModel:
    """The model served now; 503 (retry after the alias's next check) while there is none."""
    model = state.engine.model
    if model is None or state.watcher.served_version() is None:
        raise ApiError(503, state.not_ready(), type="server_error", code="model_not_ready",
                       headers={"Retry-After": str(max(1, int(state.config.serving.watch_seconds)))})
    return model


def check_limits(serving: ServingConfig, body: GenerationBody, max_tokens: int | None,
                 param: str) -> tuple[int, list[str]]:
    """The request's max_tokens (the configured default if it names none) and its stop sequences,
    once the fields both endpoints share are within what this server serves and allows (every front
    door: the built-in engine's and the vLLM backend's)."""
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


async def _tokenize(state: ServingState, model: LoadedModel, prompt: list[dict[str, str]] | str, max_tokens: int,
                    param: str) -> list[int]:
    """The prompt's token ids with ``model``; 400 if they and ``max_tokens`` do not fit."""
    serving = state.config.serving
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


def _queue_full(state: ServingState) -> ApiError:
    """429 for a request that finds the queue full, counted in /metrics."""
    state.telemetry.rejected.labels("queue_full").inc()
    return ApiError(429, f"{QueueFull(state.engine.max_queued_requests)}; retry after {RETRY_AFTER_SECONDS} s",
                    type="server_error", code="queue_full", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _check_queue(state: ServingState) -> None:
    """Refuse early (before tokenizing) when the queue is full; submitting decides for sure."""
    if state.engine.queued >= state.engine.max_queued_requests:
        raise _queue_full(state)


def _cancel(state: ServingState, request: GenerationRequest, lease: Lease) -> None:
    """Cancel the request; a queued one gets no more events, so its lease ends here (a running one
    keeps its adapter until the worker's sweep sees its row gone)."""
    state.engine.cancel(request)
    lease.release()


def _client_gone(state: ServingState, request: GenerationRequest, lease: Lease) -> ApiError:
    """Cancel the request of a client that disconnected; the error is only logged (nobody reads it)."""
    _cancel(state, request, lease)
    return ApiError(499, "the client closed the connection before the answer was ready",
                    code="client_closed_request")


def _api_error_for(error: BaseException) -> ApiError:
    """What the client is told when generation fails."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, PromptTooLong):
        return ApiError(400, str(error), code="context_length_exceeded")
    if isinstance(error, EngineStopped):
        return ApiError(503, str(error), type="server_error", code="shutting_down")
    return ApiError(500, f"generation failed: {type(error).__name__}: {error}", type="server_error")


# ------------------------------------------------------------------ through the engine


async def generate(state: ServingState, client: Request, *, kind: Kind, endpoint: str,
                   prompt: list[dict[str, str]] | str, body: GenerationBody, requested_max_tokens: int | None,
                   max_tokens_param: str, arrived: float) -> Response:
    """Check the request against the server's limits, tokenize its prompt for the model served now,
    queue it on the engine and answer once it starts: the whole completion, or a stream. ``client``
    is the HTTP request, whose body has been read: its channel tells when the client disconnects."""
    max_tokens, stops = check_limits(state.config.serving, body, requested_max_tokens, max_tokens_param)
    model = _served_model(state)
    route, lease = resolve_route(state, await choose_route(state, body))  # a canary may pick @challenger
    try:
        _check_queue(state)
        sent = prompt  # a shadow copy puts @challenger's own system prompt before the client's messages
        if kind == "chat":  # the answering version's linked system prompt, when the chat has no system turn
            prompt = await with_version_system_prompt(state, lease.target, prompt)  # type: ignore[arg-type]
        prompt_ids = await _tokenize(state, model, prompt, max_tokens, "messages" if kind == "chat" else "prompt")
        return await _generate_leased(state, client, lease, kind=kind, endpoint=endpoint, prompt=prompt, body=body,
                                      max_tokens=max_tokens, stops=stops, model=model, prompt_ids=prompt_ids,
                                      arrived=arrived, route=route, sent=sent)
    except ApiError as error:
        lease.release()
        raise RoutedApiError(error, route, lease.target.version) from None  # logged as the routed version's
    except BaseException:
        lease.release()  # no generation holds it (a running one releases it with its last event too)
        raise


async def _generate_leased(state: ServingState, client: Request, lease: Lease, *, kind: Kind, endpoint: str,
                           prompt: list[dict[str, str]] | str, body: GenerationBody, max_tokens: int,
                           stops: list[str], model: LoadedModel, prompt_ids: list[int], arrived: float,
                           route: Route, sent: list[dict[str, str]] | str) -> Response:
    """Generate on the lease's target (an adapter, or the model itself); the lease ends with the
    request's last engine event, or when it is cancelled before it ran."""
    events, emit = lease.event_queue()
    temperature = 1.0 if body.temperature is None else body.temperature
    top_p = 1.0 if body.top_p is None else body.top_p
    request = GenerationRequest(prompt=prompt, max_tokens=max_tokens, emit=emit, temperature=temperature,
                                top_p=top_p, stop=stops, seed=body.seed, stream=bool(body.stream),
                                prompt_ids=prompt_ids, encoded_by=model.version, ignore_eos=body.ignore_eos,
                                min_tokens=body.min_tokens, adapter=lease.target.adapter, arrived=arrived)
    params = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stops,
              "seed": body.seed}
    try:
        state.engine.submit(request)
    except QueueFull:
        raise _queue_full(state) from None
    except EngineStopped as error:
        raise _api_error_for(error) from None
    async with _watching_disconnect(client, events):
        first = await events.get()
        if first is CLIENT_GONE:
            raise _client_gone(state, request, lease)
        if isinstance(first, Failed):
            raise _api_error_for(first.error)
        assert isinstance(first, Started)
        answer = _Answer(state=state, kind=kind, endpoint=endpoint, prompt=prompt, params=params,
                         arrived=arrived, request=request, events=events, lease=lease,
                         model_id=body.model or state.model_name, route=route, sent=sent,
                         version=_answering_version(lease.target, first.version))
        if not body.stream:
            return await answer.whole()
    # Starlette listens for the disconnect of a streaming response itself, and cancels the stream
    return answer.streamed(include_usage=bool(body.stream_options and body.stream_options.include_usage))


@contextlib.asynccontextmanager
async def _watching_disconnect(client: Request, events: asyncio.Queue[Received]) -> AsyncIterator[None]:
    """While inside, a disconnect of ``client`` puts :data:`CLIENT_GONE` on ``events``."""

    async def watch() -> None:
        # the body has been read, so the channel's next message is the disconnect (uvicorn sends it
        # as soon as the connection closes, and also once the response is complete)
        while (await client.receive())["type"] != "http.disconnect":
            pass
        events.put_nowait(CLIENT_GONE)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()


def _answering_version(target: Target, started_on: str) -> str:
    """The version that answers: the target's (an adapter's registry version), unless the engine
    ran the request on another model than the one the target belongs to."""
    return target.version if started_on == target.model_version else started_on


# ------------------------------------------------------------------ the answer


@dataclass
class _Answer:
    """One started generation, answered in OpenAI's shape for its ``kind``."""

    state: ServingState
    kind: Kind
    endpoint: str
    prompt: list[dict[str, str]] | str
    params: dict[str, Any]
    arrived: float
    request: GenerationRequest
    events: asyncio.Queue[Received]
    lease: Lease
    model_id: str  # the model the request named (echoed, as OpenAI and vLLM do)
    route: Route  # the alias that answers, and whether the canary split chose it (for the request log)
    version: str  # the one that started it: a swap never splits a request
    sent: list[dict[str, str]] | str  # the prompt as the client sent it (before the version's system prompt)
    response_id: str = field(init=False)
    created: int = field(init=False)

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        self.response_id, self.created = f"{prefix}-{uuid.uuid4().hex}", int(time.time())

    @property
    def fingerprint(self) -> str:
        return f"{self.state.model_name}-v{self.version}"

    async def whole(self) -> JSONResponse:
        while True:
            event = await self.events.get()
            if event is CLIENT_GONE:
                raise _client_gone(self.state, self.request, self.lease)
            if isinstance(event, Failed):
                raise _api_error_for(event.error)
            if isinstance(event, Finished):
                break
        done = event
        self._count(done)
        await self._save(done, stream=False)
        choice: dict[str, Any] = (
            {"index": 0, "message": {"role": "assistant", "content": done.text}, "logprobs": None,
             "finish_reason": done.finish_reason} if self.kind == "chat" else
            {"index": 0, "text": done.text, "logprobs": None, "finish_reason": done.finish_reason})
        return JSONResponse({"id": self.response_id, "object": "chat.completion" if self.kind == "chat" else
                             "text_completion", "created": self.created, "model": self.model_id,
                             "system_fingerprint": self.fingerprint, "choices": [choice], "usage": _usage(done)},
                            headers=version_headers(self.version))

    def streamed(self, include_usage: bool) -> StreamingResponse:
        return StreamingResponse(self._events_as_sse(include_usage), media_type="text/event-stream",
                                 headers={**version_headers(self.version), "Cache-Control": "no-cache",
                                          "X-Accel-Buffering": "no"})

    async def _events_as_sse(self, include_usage: bool) -> AsyncIterator[str]:
        finished = False
        try:
            if self.kind == "chat":
                yield self._chunk(None, role=True)
            while True:
                event = await self.events.get()
                if event is CLIENT_GONE:  # seen just before the stream began
                    return
                if isinstance(event, Delta):
                    yield self._chunk(event.text)
                elif isinstance(event, Finished):
                    finished = True
                    self._count(event)
                    yield self._chunk(None, finish_reason=event.finish_reason)
                    if include_usage:
                        data = {**self._chunk_fields(), "choices": [], "usage": _usage(event)}
                        yield f"data: {json.dumps(data)}\n\n"
                    await self._save(event, stream=True)
                    yield "data: [DONE]\n\n"
                    return
                elif isinstance(event, Failed):
                    finished = True
                    yield f"data: {json.dumps(_api_error_for(event.error).body())}\n\n"
                    yield "data: [DONE]\n\n"
                    return
        finally:
            if not finished:  # the client went away (Starlette cancelled the stream): its row leaves the batch
                _cancel(self.state, self.request, self.lease)

    def _chunk_fields(self) -> dict[str, Any]:
        return {"id": self.response_id, "object": "chat.completion.chunk" if self.kind == "chat" else
                "text_completion", "created": self.created, "model": self.model_id,
                "system_fingerprint": self.fingerprint}

    def _chunk(self, text: str | None, finish_reason: str | None = None, role: bool = False) -> str:
        if self.kind == "chat":
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else (
                {"content": text} if text is not None else {})
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        data = {**self._chunk_fields(), "choices": [choice]}
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    def _count(self, done: Finished) -> None:
        self.state.telemetry.prompt_tokens.inc(done.prompt_tokens)
        self.state.telemetry.completion_tokens.inc(done.completion_tokens)

    async def _save(self, done: Finished, stream: bool) -> None:
        await asyncio.to_thread(self.state.record_answer, response_id=self.response_id, endpoint=self.endpoint,
                                kind=self.kind, prompt=self.prompt, done=done, version=self.version,
                                arrived=self.arrived, stream=stream, params=self.params,
                                route=self.route.log_fields())
        if self.route.shadow:  # rollout shadow: @challenger answers it again in the background, never returned
            mirror_to_challenger(self.state, self.request, shadows=self.response_id, endpoint=self.endpoint,
                                 sent=self.sent)


def _usage(done: Finished) -> dict[str, int]:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}
