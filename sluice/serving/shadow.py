"""Shadow generation: @challenger answers a copy of a request the champion has answered, in the background.

Under ``promotion.rollout: shadow`` the route of a request for the default model says whether @challenger
shadows it (sluice.serving.canary.choose_route: the share tag, by the canary's stable hash). Once the
champion's answer is complete and recorded, :func:`mirror_to_challenger` submits the same prompt (its token
ids and sampling parameters) to the engine again, with the challenger's adapter. Nothing waits for it: the
client already has, or is just being sent, the champion's answer, and the champion's latency was taken
before the copy started.

The shadow answer is never returned; it is written to the request log with ``"shadow": true``, the
challenger's version and ``"shadows"``: the response id of the champion's answer it copies, for the
watch flow to compare the two. A shadow generation that fails is logged with status 500 (the evidence
against the challenger); one the server has no room or no challenger for is dropped with a warning (that
says nothing about the challenger). Neither ever reaches the client's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sluice.core.registry.client import CHALLENGER
from sluice.serving.api import ApiError
from sluice.serving.engine import (
    EngineStopped,
    Event,
    Failed,
    Finished,
    GenerationRequest,
)
from sluice.serving.waiting import QueueFull

if TYPE_CHECKING:
    from sluice.serving.adapters import Lease
    from sluice.serving.state import ServingState

log = logging.getLogger("sluice.serving")

_running: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to its tasks


def mirror_to_challenger(state: ServingState, answered: GenerationRequest, *, shadows: str, endpoint: str) -> None:
    """Generate ``answered`` (the champion's finished request) again with @challenger, in the background."""
    task = asyncio.get_running_loop().create_task(_shadow(state, answered, shadows, endpoint))
    _running.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[None]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:  # a bug here: never the client's concern
        log.error("shadow generation crashed", exc_info=task.exception())


async def _shadow(state: ServingState, answered: GenerationRequest, shadows: str, endpoint: str) -> None:
    started = time.perf_counter()
    try:
        lease = state.served.resolve(f"{state.model_name}@{CHALLENGER}", known=state.watcher.known())
    except ApiError as error:  # @challenger went away since the request was routed
        log.warning("shadow of %s dropped: %s", shadows, error.message)
        return
    events: asyncio.Queue[Event] = asyncio.Queue()
    request = dataclasses.replace(answered, emit=_emitter(events, lease), adapter=lease.target.adapter,
                                  stream=False, arrived=started, cancelled=False)
    try:
        state.engine.submit(request)
    except (QueueFull, EngineStopped) as error:  # no room: the live traffic comes first
        lease.release()
        log.warning("shadow of %s dropped: %s", shadows, error)
        return
    while not isinstance(event := await events.get(), Finished | Failed):
        pass
    record = _record(state, lease.target.version, shadows, endpoint, started, event)
    await asyncio.to_thread(state.request_log.write, record)  # redacts the completion


def _emitter(events: asyncio.Queue[Event], lease: Lease) -> Any:
    loop = asyncio.get_running_loop()

    def emit(event: Event) -> None:
        if isinstance(event, Finished | Failed):
            lease.release()
        with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown)
            loop.call_soon_threadsafe(events.put_nowait, event)

    return emit


def _record(state: ServingState, version: str, shadows: str, endpoint: str, started: float,
            event: Finished | Failed) -> dict[str, Any]:
    """The request-log line of one shadow answer (or failure)."""
    head = {"id": f"shadow-{uuid.uuid4().hex}", "time": datetime.now(UTC).isoformat(), "endpoint": endpoint,
            "model": state.model_name, "model_version": version, "alias": CHALLENGER, "shadow": True,
            "shadows": shadows, "latency_ms": round(1000 * (time.perf_counter() - started), 2)}
    if isinstance(event, Failed):
        log.warning("shadow of %s failed on version %s: %s: %s", shadows, version, type(event.error).__name__,
                    event.error)
        return {**head, "status": 500,
                "error": {"message": f"{type(event.error).__name__}: {event.error}", "code": None, "param": None}}
    return {**head, "status": 200, "prompt_tokens": event.prompt_tokens, "completion_tokens": event.completion_tokens,
            "finish_reason": event.finish_reason, "completion": event.text}
