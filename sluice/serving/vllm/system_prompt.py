"""The answering version's linked system prompt on the vLLM front door, as with the built-in engine
(:mod:`sluice.serving.version_prompts`): a chat without a system turn is forwarded with the system prompt
linked to the registry version its route serves (the champion, the canary's challenger, or @challenger's
shadow copy, each its own), and logged as sent. Every route here is a registry version's (nothing is loaded
through the API), so each may have one; a completion's text is forwarded as sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sluice.serving.version_prompts import with_linked_system_prompt

if TYPE_CHECKING:
    from sluice.serving.vllm.app import VllmState

Prompt = list[dict[str, str]] | str  # a chat's messages or a completion's text, as the request log has it


async def with_route_system_prompt(state: VllmState, version: str, body: dict[str, Any],
                                   prompt: Prompt) -> tuple[dict[str, Any], Prompt]:
    """``body`` (as forwarded) and ``prompt`` (for the log) with ``version``'s linked system prompt first, when
    it has one and the chat has no system turn; 503 (ApiError) when the registry cannot be read."""
    if isinstance(prompt, str):
        return body, prompt
    sent = body["messages"]
    messages = await with_linked_system_prompt(state.follower.registry, version, sent,
                                               retry_after_s=state.config.serving.watch_seconds)
    if len(messages) == len(sent):  # it has none, or the client sent its own system turn
        return body, prompt
    return {**body, "messages": messages}, [messages[0], *prompt]
