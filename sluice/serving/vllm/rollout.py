"""Canary and shadow rollout on the vLLM front door: the built-in engine's decision
(:func:`sluice.serving.canary.split_route`: @challenger's share tag, the stable hash of ``user``, salted
with its version) and the same request-log fields (``alias`` and ``canary`` on each answer; a shadow line
with ``shadow: true`` and ``shadows``), so the watch-canary flow reads either backend's log alike.

As with the built-in engine, @challenger is split to only while it is served here: ``challenger`` in
``serving.extra_aliases``. The follower then keeps its version loaded in every replica while the alias
names one (a LoRA version: its adapter in the main set's replicas; a full fine-tune: engines of its own),
and frees it once the trial ends and the alias is deleted.

- canary: the side the split picks is the alias whose route the request takes (a challenger gone since
  the choice: the main alias, still logged as split);
- shadow: once the champion's answer is complete and logged, the same body goes to @challenger's engine
  model in the background (:func:`mirror_to_challenger`), a chat with @challenger's own linked system prompt
  (:mod:`~sluice.serving.vllm.system_prompt`) rather than the champion's. Its answer or failure is logged,
  never returned; one with no challenger, engine or room for it, or whose linked prompt cannot be read now,
  is dropped with a warning (that says nothing about it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import httpx

from sluice.core.registry.client import CHALLENGER
from sluice.serving.api import ApiError, GenerationBody
from sluice.serving.canary import Route as RequestRoute
from sluice.serving.canary import challenger_share, split_route
from sluice.serving.shadow import in_background, shadow_record_head
from sluice.serving.vllm.plan import alias_for_model
from sluice.serving.vllm.replicas import NoHealthyReplica
from sluice.serving.vllm.router import Lease, NoRoute
from sluice.serving.vllm.system_prompt import with_route_system_prompt

if TYPE_CHECKING:
    from sluice.serving.vllm.app import VllmState

log = logging.getLogger("sluice.serving.vllm")


async def choose_route(state: VllmState, body: GenerationBody) -> tuple[RequestRoute, str | None]:
    """The request's route (for the log) and the alias whose engines answer it (None: nothing served here
    by that name)."""
    challenger = state.router.routes().get(CHALLENGER)

    async def share_of(version: str) -> float:
        return await challenger_share(state.canary_shares, state.follower.registry, version,
                                      max_age=state.config.serving.watch_seconds)

    route = await split_route(body, model_name=state.model_name, main_alias=state.aliases[0],
                              rollout=state.config.promotion.rollout,
                              challenger=None if challenger is None else challenger.version, share_of=share_of)
    if route.canary:
        return route, route.alias
    return route, alias_for_model(body.model, model_name=state.model_name, aliases=state.aliases,
                                  routes=state.router.routes())


def acquire_routed(state: VllmState, route: RequestRoute, alias: str) -> tuple[RequestRoute, Lease]:
    """A lease on the alias's route; a challenger the split chose that went away since sends the request to
    the main alias (the route returned says so)."""
    try:
        return route, state.router.acquire(alias)
    except NoRoute:
        if not (route.canary and alias == CHALLENGER):
            raise
    main = state.aliases[0]
    return RequestRoute(f"{state.model_name}@{main}", main, canary=True), state.router.acquire(main)


def mirror_to_challenger(state: VllmState, body: dict[str, Any], *, shadows: str, endpoint: str,
                         prompt: list[dict[str, str]] | str) -> None:
    """Send ``body`` (the champion's answered request, as forwarded before its system prompt) to @challenger,
    in the background; ``prompt``: its messages or text as the client sent them."""
    in_background(_shadow(state, body, shadows, endpoint, prompt))


async def _shadow(state: VllmState, body: dict[str, Any], shadows: str, endpoint: str,
                  prompt: list[dict[str, str]] | str) -> None:
    started = time.perf_counter()
    try:
        lease = state.router.acquire(CHALLENGER)
    except NoRoute:
        log.warning("shadow of %s dropped: @challenger is not served any more", shadows)
        return
    try:
        body, prompt = await with_route_system_prompt(state, lease.route.version, body, prompt)
        record = await _generate(state, lease, body, shadows, endpoint, started)
    except ApiError as error:  # its linked prompt cannot be read now: that says nothing about the challenger
        log.warning("shadow of %s dropped: %s", shadows, error.message)
        return
    finally:
        state.router.release(lease)
    if record is not None:
        await asyncio.to_thread(state.request_log.write, {**record, "prompt": prompt})  # redacts prompt, completion


async def _generate(state: VllmState, lease: Lease, body: dict[str, Any], shadows: str, endpoint: str,
                    started: float) -> dict[str, Any] | None:
    """The shadow's log line; None when it was dropped."""
    replica_set = state.follower.sets.get(lease.route.set_key)
    try:
        if replica_set is None:
            raise NoHealthyReplica(f"the engines of {lease.route.set_key} are gone")
        replica = replica_set.pick()
    except NoHealthyReplica as error:
        log.warning("shadow of %s dropped: %s", shadows, error)
        return None
    shadow_body = {key: value for key, value in body.items() if key != "stream_options"}
    shadow_body.update(model=lease.route.engine_model, stream=False)
    try:
        response = await state.client.post(f"{replica.url}{endpoint}", json=shadow_body)
    except httpx.HTTPError as error:  # the replica, not the challenger: nothing to hold against it
        log.warning("shadow of %s dropped: engine %s unreachable (%s)", shadows, replica.name, error)
        return None
    finally:
        replica_set.done(replica)
    if response.status_code == 429:  # no room: the live traffic comes first
        log.warning("shadow of %s dropped: engine %s is full", shadows, replica.name)
        return None
    head = {**shadow_record_head(state.model_name, lease.route.version, shadows, endpoint, started),
            "backend": "vllm", "replica": replica.name}
    if response.status_code != 200:
        error = upstream_error(response.status_code, response.content)
        log.warning("shadow of %s failed on version %s: %s", shadows, lease.route.version, error.message)
        return {**head, "status": error.status,
                "error": {"message": error.message, "code": error.code, "param": error.param}}
    answer = response.json()
    choice = first_choice(answer)
    text = answer_text(choice)
    usage = answer.get("usage") or {}
    return {**head, "status": 200, "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"), "finish_reason": choice.get("finish_reason"),
            "completion": text or ""}


def upstream_error(status: int, content: bytes) -> ApiError:
    """An engine's error answer as an :class:`ApiError` (its OpenAI error body when it sent one)."""
    try:
        data = json.loads(content)
    except ValueError:
        data = {}
    # OpenAI's shape {"error": {...}}; older vLLM sends the fields at the top ({"object": "error", ...})
    error = data.get("error", data) if isinstance(data, dict) else {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    message = error.get("message") or content.decode("utf-8", "replace")[:500] or f"engine answered {status}"
    return ApiError(status, str(message), type=str(error.get("type") or "server_error"), param=error.get("param"),
                    code=error.get("code"))


def first_choice(answer: dict[str, Any]) -> dict[str, Any]:
    """An engine's whole answer's first choice (empty when it has none)."""
    return (answer.get("choices") or [{}])[0]


def answer_text(choice: dict[str, Any]) -> str | None:
    """A whole answer's text: a chat choice's message, or a completion choice's text."""
    return choice.get("message", {}).get("content") if "message" in choice else choice.get("text")
