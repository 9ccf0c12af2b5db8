"""The system prompt of the version that answers: a chat without a system turn gets the linked system prompt
of the registry version its target serves (the prompt the version was gated with, see
sluice.core.registry.prompts), whether it answers the client or, under ``promotion.rollout: shadow``, a copy
in the background (sluice.serving.shadow). Targets that are not registry versions (the base, adapters loaded
through the API) and models served from a folder (the engine server: no registry) get the messages as sent.
The vLLM front door (sluice.serving.vllm.system_prompt) serves only registry versions and calls
:func:`with_linked_system_prompt` for each route alike.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from sluice.core.registry.prompts import ServedSystemPrompts, with_system_prompt
from sluice.serving.api import ApiError

if TYPE_CHECKING:
    from sluice.core.registry.client import ModelRegistry
    from sluice.serving.adapters import Target
    from sluice.serving.state import ServingState

_SYSTEM_PROMPTS: dict[tuple[str, str], ServedSystemPrompts] = {}  # (tracking URI, model) → its versions' prompts


async def with_version_system_prompt(state: ServingState, target: Target,
                                     messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The chat with ``target``'s linked system prompt first, when it is a registry version with one and the
    chat has no system turn; 503 when the registry cannot be read (the answer would miss its prompt)."""
    registry = getattr(state.watcher, "registry", None)
    if not target.from_registry or registry is None:
        return messages
    return await with_linked_system_prompt(registry, target.version, messages,
                                           retry_after_s=state.config.serving.watch_seconds)


async def with_linked_system_prompt(registry: ModelRegistry, version: str, messages: list[dict[str, Any]], *,
                                    retry_after_s: float) -> list[dict[str, Any]]:
    """The chat with registry version ``version``'s linked system prompt first when the chat has no system
    turn (either front door: the vLLM one serves only registry versions); 503 when the registry cannot be
    read, with Retry-After ``retry_after_s``."""
    if any(m.get("role") == "system" for m in messages):
        return messages
    prompts = _SYSTEM_PROMPTS.setdefault((registry.target.tracking_uri, registry.model_name),
                                         ServedSystemPrompts(registry))
    try:
        system = await asyncio.to_thread(prompts.of, version)
    except Exception as error:  # the registry is unreachable: the answer would be made without its prompt
        raise ApiError(503, f"cannot read model version {version}'s linked system prompt: "
                            f"{type(error).__name__}: {error}", type="server_error", code="model_not_ready",
                       headers={"Retry-After": str(max(1, int(retry_after_s)))}) from error
    return with_system_prompt(messages, system)
