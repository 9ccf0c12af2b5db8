"""Shadow generation: @challenger answers a copy of a request the champion has answered, in the background.

Under ``promotion.rollout: shadow`` the route of a request for the default model says whether @challenger
shadows it (sluice.serving.canary.choose_route: the share tag, by the canary's stable hash). Once the
champion's answer is complete and recorded, :func:`mirror_to_challenger` submits the same request (its
sampling parameters) to the engine again, with the challenger's adapter. A chat is the client's messages with
the challenger's own linked system prompt when the client sent no system turn (sluice.serving.version_prompts),
tokenized again: @challenger answers as it would when serving, not with the champion's prompt. Nothing waits
for it: the client already has, or is just being sent, the champion's answer, and the champion's latency was
taken before the copy started.

The shadow answer is never returned; it is written to the request log with ``"shadow": true``, the
challenger's version, the prompt it answered and ``"shadows"``: the response id of the champion's answer it
copies, for the watch flow to compare the two. A shadow generation that fails is logged with status 500
(the evidence against the challenger); one the server has no room or no challenger for, or whose linked
prompt cannot be read now, is dropped with a warning (that says nothing about the challenger). Neither ever
reaches the client's request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.core.registry.client import CHALLENGER
from sluice.serving.api import ApiError
from sluice.serving.engine import (
    EngineStopped,
    Failed,
    Finished,
    GenerationRequest,
)
from sluice.serving.version_prompts import with_version_system_prompt
from sluice.serving.waiting import QueueFull

if TYPE_CHECKING:
    from sluice.serving.adapters import Lease
    from sluice.serving.state import ServingState

log = logging.getLogger("sluice.serving")

_running: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to its tasks


def mirror_to_challenger(state: ServingState, answered: GenerationRequest, *, shadows: str, endpoint: str,
                         sent: list[dict[str, str]] | str) -> None:
    """Generate ``answered`` (the champion's finished request) again with @challenger, in the background;
    ``sent``: the prompt as the client sent it (a chat gets the challenger's own system prompt)."""
    in_background(_shadow(state, answered, shadows, endpoint, sent))


def in_background(shadow: Coroutine[Any, Any, None]) -> None:
    """Run a shadow generation on the running loop, unawaited (the vLLM front door's too); a crash is logged."""
    task = asyncio.get_running_loop().create_task(shadow)
    _running.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[None]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:  # a bug here: never the client's concern
        log.error("shadow generation crashed", exc_info=task.exception())


async def _shadow(state: ServingState, answered: GenerationRequest, shadows: str, endpoint: str,
                  sent: list[dict[str, str]] | str) -> None:
    started = time.perf_counter()
    try:
        lease = state.served.resolve(f"{state.model_name}@{CHALLENGER}", known=state.watcher.known())
    except ApiError as error:  # @challenger went away since the request was routed
        log.warning("shadow of %s dropped: %s", shadows, error.message)
        return
    try:
        copy = await challengers_request(state, lease, answered, sent)
    except ApiError as error:  # its linked prompt cannot be read now: that says nothing about the challenger
        lease.release()
        log.warning("shadow of %s dropped: %s", shadows, error.message)
        return
    events, emit = lease.event_queue()
    request = dataclasses.replace(copy, emit=emit, arrived=started)
    try:
        state.engine.submit(request)
    except (QueueFull, EngineStopped) as error:  # no room: the live traffic comes first
        lease.release()
        log.warning("shadow of %s dropped: %s", shadows, error)
        return
    while not isinstance(event := await events.get(), Finished | Failed):
        pass
    record = {**_record(state, lease.target.version, shadows, endpoint, started, event), "prompt": request.prompt}
    await asyncio.to_thread(state.request_log.write, record)  # redacts the prompt and the completion


async def challengers_request(state: ServingState, lease: Lease, answered: GenerationRequest,
                              sent: list[dict[str, str]] | str) -> GenerationRequest:
    """The champion's request as @challenger gets it when serving: a chat with the challenger's own linked
    system prompt (when the client sent no system turn) instead of the champion's; 503 (ApiError) when that
    prompt cannot be read."""
    copy = dataclasses.replace(answered, adapter=lease.target.adapter, stream=False, cancelled=False)
    if isinstance(sent, str):
        return copy  # a completion: no system prompt, the champion's token ids fit
    prompt = await with_version_system_prompt(state, lease.target, sent)
    if prompt == answered.prompt:
        return copy
    # no token ids: the engine tokenizes it again (a prompt that does not fit is then a failure, logged as the
    # challenger's: it would fail the same way when serving)
    return dataclasses.replace(copy, prompt=prompt, prompt_ids=None, encoded_by=None)


def shadow_record_head(model_name: str, version: str, shadows: str, endpoint: str, started: float) -> dict[str, Any]:
    """The fields every shadow line has, on either front door (the watch flow pairs them by ``shadows``)."""
    return {"id": f"shadow-{uuid.uuid4().hex}", "time": datetime.now(UTC).isoformat(), "endpoint": endpoint,
            "model": model_name, "model_version": version, "alias": CHALLENGER, "shadow": True,
            "shadows": shadows, "latency_ms": round(1000 * (time.perf_counter() - started), 2)}


def _record(state: ServingState, version: str, shadows: str, endpoint: str, started: float,
            event: Finished | Failed) -> dict[str, Any]:
    """The request-log line of one shadow answer (or failure)."""
    head = shadow_record_head(state.model_name, version, shadows, endpoint, started)
    if isinstance(event, Failed):
        log.warning("shadow of %s failed on version %s: %s: %s", shadows, version, type(event.error).__name__,
                    event.error)
        return {**head, "status": 500,
                "error": {"message": f"{type(event.error).__name__}: {event.error}", "code": None, "param": None}}
    return {**head, "status": 200, "prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
            "finish_reason": event.finish_reason, "completion": event.text}
