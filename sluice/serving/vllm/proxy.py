"""The generation path of the front door in backend vllm: ``/v1/chat/completions`` and
``/v1/completions`` are checked against the front door's limits, then forwarded to a healthy
replica of the route their alias takes (the least busy one), streamed answers chunk by chunk as
they come. While @challenger is on trial, a request for the default model is split (canary) or
mirrored (shadow) as with the built-in engine (:mod:`~sluice.serving.vllm.rollout`). The request's
``model`` becomes the engine's name for the version (an adapter's ``lora_name``, or a full
fine-tune's served name); every other field goes through as sent, so vLLM's own parameters
(``ignore_eos``, ``min_tokens``…) work. A chat without a system turn gets the answering version's linked
system prompt first (:mod:`~sluice.serving.vllm.system_prompt`), as with the built-in engine.

Each answer carries ``X-Sluice-Model-Version``, and is written to the request log (PII redacted)
and the feedback store under the engine's response id, so ``POST /v1/feedback`` works as with
the built-in engine. A replica that cannot be reached before it answered (it just died) is
skipped and the request goes to another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from sluice.serving.api import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    GenerationBody,
    read_json,
    validation_error,
    version_headers,
)
from sluice.serving.canary import Route as RequestRoute
from sluice.serving.canary import RoutedApiError
from sluice.serving.generation import check_limits
from sluice.serving.vllm.replicas import NoHealthyReplica, Replica, ReplicaSet
from sluice.serving.vllm.rollout import (
    acquire_routed,
    answer_text,
    choose_route,
    first_choice,
    mirror_to_challenger,
    upstream_error,
)
from sluice.serving.vllm.router import Lease, NoRoute
from sluice.serving.vllm.system_prompt import Prompt, with_route_system_prompt

if TYPE_CHECKING:
    from sluice.serving.vllm.app import VllmState

log = logging.getLogger("sluice.serving.vllm")
Kind = Literal["chat", "completion"]
RETRY_AFTER_SECONDS = 1
UPSTREAM_TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=30.0, pool=None)  # generations may be long


def upstream_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT,
                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))


# ------------------------------------------------------------------ before forwarding


async def read_request(state: VllmState, request: Request, kind: Kind) -> tuple[dict[str, Any], GenerationBody]:
    """The raw JSON (what is forwarded) and its validated shape; 413/400 like the built-in engine."""
    raw = await read_json(request, state.config.serving.max_body_bytes)
    try:
        body = (ChatRequest if kind == "chat" else CompletionRequest).model_validate(raw)
    except ValidationError as error:
        raise validation_error(error) from None
    return raw, body


def forwarded_body(state: VllmState, raw: dict[str, Any], body: GenerationBody, kind: Kind) -> dict[str, Any]:
    """The body to forward once within the front door's limits: ``max_tokens`` defaulted to
    ``serving.default_max_tokens`` (vLLM would otherwise fill the context)."""
    serving = state.config.serving
    param = "max_completion_tokens" if isinstance(body, ChatRequest) and body.max_completion_tokens else "max_tokens"
    max_tokens = (body.max_completion_tokens if isinstance(body, ChatRequest) and param == "max_completion_tokens"
                  else body.max_tokens)
    check_limits(serving, body, max_tokens, param)
    if kind == "completion" and isinstance(body, CompletionRequest) and isinstance(body.prompt, list) \
            and len(body.prompt) != 1:
        raise ApiError(400, f"one prompt per request (got {len(body.prompt)})", param="prompt", code="invalid_value")
    forwarded = dict(raw)
    if max_tokens is None:
        forwarded["max_tokens"] = min(serving.default_max_tokens, serving.max_tokens_limit)
    return forwarded


async def take_route(state: VllmState, body: GenerationBody) -> tuple[RequestRoute, Lease]:
    """The request's route (the canary split's side for the default model while @challenger is on trial,
    else the alias its ``model`` names) and a lease on that alias's engines; 404 / 503 when none."""
    route, alias = await choose_route(state, body)
    if alias is None:
        served = ", ".join([state.model_name, *(f"{state.model_name}@{a}" for a in state.aliases)])
        raise ApiError(404, f"model {body.model!r} is not served here; this server serves {served}", param="model",
                       code="model_not_found")
    try:
        return acquire_routed(state, route, alias)
    except NoRoute:
        raise ApiError(503, state.not_ready(alias), type="server_error", code="model_not_ready",
                       headers={"Retry-After": str(max(1, int(state.config.serving.watch_seconds)))}) from None


# ------------------------------------------------------------------ forwarding


@dataclass
class Forwarded:
    """One request on its way through a replica; :meth:`finish` gives everything back."""

    state: VllmState
    route: RequestRoute  # the alias that answers and whether the canary split chose it (for the log)
    lease: Lease
    replica_set: ReplicaSet
    body: dict[str, Any]  # as forwarded, before the version's system prompt: what @challenger shadows
    kind: Kind
    endpoint: str
    prompt: Prompt  # what the engine is sent (a chat: with the version's linked system prompt), for the log
    sent: Prompt  # as the client sent it: the shadow copy gets @challenger's own system prompt instead
    params: dict[str, Any]
    arrived: float
    stream: bool
    replica: Replica | None = None
    upstream: httpx.Response | None = None
    first_byte_at: float | None = None
    finished: bool = field(default=False)

    @property
    def version(self) -> str:
        return self.lease.route.version

    async def send(self, body: dict[str, Any]) -> httpx.Response:
        """POST to the least busy healthy replica; one that cannot be reached is skipped."""
        tried: set[int] = set()
        while True:
            try:
                replica = self.replica_set.pick(exclude=tried)
            except NoHealthyReplica as error:
                raise ApiError(503, f"{error}; retry shortly", type="server_error", code="engine_unavailable",
                               headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
            self.replica = replica
            client = self.state.client
            try:
                request = client.build_request("POST", f"{replica.url}{self.endpoint}", json=body)
                self.upstream = await client.send(request, stream=True)
                return self.upstream
            except (httpx.ConnectError, httpx.RemoteProtocolError) as error:  # nothing was generated: retry
                self.replica_set.done(replica)
                self.replica = None
                tried.add(id(replica))
                log.warning("engine %s unreachable (%s); trying another", replica.name, error)

    async def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.replica is not None:
            self.replica_set.done(self.replica)
        self.state.router.release(self.lease)

    async def record(self, *, response_id: str, text: str, finish_reason: str | None,
                     usage: dict[str, int] | None) -> None:
        if usage:
            self.state.telemetry.prompt_tokens.inc(usage.get("prompt_tokens", 0))
            self.state.telemetry.completion_tokens.inc(usage.get("completion_tokens", 0))
        if self.first_byte_at is not None:
            self.state.telemetry.time_to_first_token.observe(self.first_byte_at - self.arrived)
        await asyncio.to_thread(self.state.record_answer, response_id=response_id, endpoint=self.endpoint,
                                kind=self.kind, prompt=self.prompt, text=text, finish_reason=finish_reason,
                                version=self.version, arrived=self.arrived, first_byte_at=self.first_byte_at,
                                stream=self.stream, params=self.params, usage=usage,
                                replica=self.replica.name if self.replica else None, route=self.route.log_fields())
        if self.route.shadow:  # rollout shadow: @challenger answers it again in the background, never returned
            mirror_to_challenger(self.state, self.body, shadows=response_id, endpoint=self.endpoint,
                                 prompt=self.sent)

    def routed(self, error: ApiError) -> RoutedApiError:
        """An error answered after routing: logged as the routed version's, on its alias."""
        return RoutedApiError(error, self.route, self.version)


async def forward(state: VllmState, request: Request, *, kind: Kind, endpoint: str, arrived: float) -> Response:
    """Check, route and forward one generation request; the engine's answer, streamed or whole."""
    raw, body = await read_request(state, request, kind)
    forwarded = forwarded_body(state, raw, body, kind)
    route, lease = await take_route(state, body)
    replica_set = state.follower.sets.get(lease.route.set_key)
    if replica_set is None:  # cannot happen while the lease is held; say so rather than fail obscurely
        state.router.release(lease)
        raise ApiError(503, f"the engines of {lease.route.set_key} are gone", type="server_error")
    prompt = ([{"role": m.role, "content": m.text()} for m in body.messages] if isinstance(body, ChatRequest)
              else body.prompt if isinstance(body.prompt, str) else body.prompt[0])  # type: ignore[attr-defined]
    params = {k: forwarded.get(k) for k in ("max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
                                             "seed") if forwarded.get(k) is not None}
    forwarded["model"] = lease.route.engine_model
    call = Forwarded(state=state, route=route, lease=lease, replica_set=replica_set, kind=kind, endpoint=endpoint,
                     prompt=prompt, sent=prompt, params=params, arrived=arrived, stream=bool(body.stream),
                     body=forwarded)
    try:  # the answering version's linked system prompt, when the chat has no system turn
        to_engine, call.prompt = await with_route_system_prompt(state, call.version, forwarded, prompt)
        upstream = await call.send(to_engine)
        headers = version_headers(call.version)
        if upstream.status_code != 200 or not call.stream:
            content = await upstream.aread()
            call.first_byte_at = time.perf_counter()
            await call.finish()
            if upstream.status_code == 200:
                await _record_whole(call, content)
            else:  # the engine's error, logged on the routed alias (a failing canary counts against its side)
                await asyncio.to_thread(state.record_rejection, endpoint,
                                        call.routed(upstream_error(upstream.status_code, content)), arrived)
            return Response(content, status_code=upstream.status_code, headers=headers,
                            media_type=upstream.headers.get("content-type", "application/json"))
    except ApiError as error:
        await call.finish()
        raise call.routed(error) from None
    except BaseException:
        await call.finish()
        raise
    # the background task gives the lease back even if the stream never started (client gone at once)
    return StreamingResponse(_relay(call, upstream), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                             background=BackgroundTask(call.finish))


async def _record_whole(call: Forwarded, content: bytes) -> None:
    answer = json.loads(content)
    choice = first_choice(answer)
    text = answer_text(choice)
    await call.record(response_id=answer.get("id", ""), text=text or "", finish_reason=choice.get("finish_reason"),
                      usage=answer.get("usage"))


async def _relay(call: Forwarded, upstream: httpx.Response) -> AsyncIterator[bytes]:
    """The engine's Server-Sent Events, each chunk passed on as it comes; the events are read on
    the side for the request log."""
    events = _SseReader(call.kind)
    try:
        async for chunk in upstream.aiter_raw():
            if call.first_byte_at is None:
                call.first_byte_at = time.perf_counter()
            yield chunk
            events.feed(chunk)
        await call.finish()
        if events.response_id:
            await call.record(response_id=events.response_id, text="".join(events.text),
                              finish_reason=events.finish_reason, usage=events.usage)
    finally:  # a client that went away closes the engine's stream too: vLLM aborts the generation
        with contextlib.suppress(Exception):
            await call.finish()


class _SseReader:
    """Collects id, text, finish reason and usage from ``data: {...}`` events split across chunks."""

    def __init__(self, kind: Kind):
        self.kind, self.buffer = kind, b""
        self.response_id: str | None = None
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        *complete, self.buffer = self.buffer.replace(b"\r\n", b"\n").split(b"\n\n")
        for event in complete:
            for line in event.split(b"\n"):
                if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                    self._take(json.loads(line[5:]))

    def _take(self, data: dict[str, Any]) -> None:
        self.response_id = self.response_id or data.get("id")
        self.usage = data.get("usage") or self.usage
        for choice in data.get("choices") or []:
            piece = choice.get("delta", {}).get("content") if self.kind == "chat" else choice.get("text")
            if piece:
                self.text.append(piece)
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
