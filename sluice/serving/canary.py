"""Canary routing: which alias answers a request for the default model while a challenger is on trial.

A request whose ``model`` is the default (``<model_name>``, ``<model_name>@<serving.alias>`` or its
``models:/`` form, or none) goes to @challenger for a share of the traffic, whenever @challenger is served
here (``serving.extra_aliases`` has it and its version can be served beside the main one; else
``/health`` says why and it gets nothing). The share is the challenger version's registry tag
``sluice.canary.share``, read when a new challenger is first routed and again every ``watch_seconds`` in
the background, so the watch-canary flow (or an operator) can change it without a restart; a version
without the tag gets no split traffic. A request that names an alias or a version explicitly is never
split. Under ``promotion.rollout: shadow`` nothing is split: the champion answers every request, and the
share (the same tag, by the same hash) picks the ones @challenger answers again in the background.

Which side a request goes to is a stable hash of its key: the OpenAI body's ``user`` when given (one
user stays on one side for the whole trial), else a fresh request id. The hash is salted with the
challenger's version, so each trial draws its own users. The request log says which alias answered
and whether the split chose it (``alias``, ``canary``), for the watch-canary flow to compare the sides.
The vLLM front door makes the same decision (:func:`split_route`; sluice.serving.vllm.rollout).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluice.core.lineage import CANARY_SHARE
from sluice.core.registry.client import CHALLENGER
from sluice.serving.api import ApiError, version_headers

if TYPE_CHECKING:
    from sluice.core.registry.client import ModelRegistry
    from sluice.serving.adapters import Lease
    from sluice.serving.api import GenerationBody
    from sluice.serving.state import ServingState

log = logging.getLogger("sluice.serving")


@dataclass(frozen=True)
class Route:
    """The public name a request is served under, the alias it picks (None: a version or an adapter named
    directly), whether the canary split chose it, and whether @challenger shadows it (rollout shadow: its
    answer is generated again with @challenger in the background, see sluice.serving.shadow)."""

    name: str
    alias: str | None
    canary: bool = False
    shadow: bool = False

    def log_fields(self) -> dict[str, Any]:
        return {"alias": self.alias, "canary": self.canary}


class RoutedApiError(ApiError):
    """An error answered after the request was routed: it names the version it went to (header and log)."""

    def __init__(self, error: ApiError, route: Route, version: str):
        super().__init__(error.status, error.message, type=error.type, param=error.param, code=error.code,
                         headers={**error.headers, **version_headers(version)})
        self.version, self.route = version, route


def in_challenger_share(key: str, share: float, salt: str) -> bool:
    """True for a ``share`` of all keys, the same answer for the same key and salt every time."""
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def alias_named(name: str, model_name: str, main_alias: str) -> str | None:
    """The alias a request's ``model`` picks; None for a version or an adapter."""
    if name == model_name:
        return main_alias
    for prefix in (f"{model_name}@", f"models:/{model_name}@"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return None


@dataclass
class ChallengerShares:
    """The share tag of each challenger version seen, re-read in the background once older than ``max_age``."""

    _known: dict[str, tuple[float, float]] = field(default_factory=dict)  # version → (share, monotonic read time)
    _reading: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def share(self, version: str, read: Callable[[], str | None], max_age: float) -> float:
        with self._lock:
            known = self._known.get(version)
            stale = known is not None and time.monotonic() - known[1] > max_age and version not in self._reading
            if stale:
                self._reading.add(version)
        if known is None:  # a new challenger: wait for its share (one registry read) before splitting
            return await asyncio.to_thread(self._read, version, read)
        if stale:
            threading.Thread(target=self._read, args=(version, read), name="sluice-canary-share", daemon=True).start()
        return known[0]

    def _read(self, version: str, read: Callable[[], str | None]) -> float:
        with self._lock:
            previous = self._known.get(version, (0.0, 0.0))[0]
        try:
            share = _parse_share(read(), version)
        except Exception as error:  # registry unreachable, or a bad tag: keep the last share (0 for a new one)
            log.warning("cannot read the canary share of version %s (%s: %s); keeping %.2f", version,
                        type(error).__name__, error, previous)
            share = previous
        with self._lock:
            self._known[version] = (share, time.monotonic())
            self._reading.discard(version)
        return share


def _parse_share(value: str | None, version: str) -> float:
    if value is None:
        return 0.0
    share = float(value)
    if not 0 <= share <= 1:
        raise ValueError(f"tag {CANARY_SHARE}={value!r} on version {version} is not a share between 0 and 1")
    return share


async def choose_route(state: ServingState, body: GenerationBody) -> Route:
    """Where the request goes: the split for the default model while a challenger is served, else as named."""
    challenger = state.served.routed(CHALLENGER).get(f"{state.model_name}@{CHALLENGER}")

    async def share_of(version: str) -> float:
        return await challenger_share(state.served.canary_shares, state.watcher.registry, version,
                                      max_age=state.config.serving.watch_seconds)

    return await split_route(body, model_name=state.model_name, main_alias=state.config.serving.alias,
                             rollout=state.config.promotion.rollout,
                             challenger=None if challenger is None else challenger.version, share_of=share_of)


async def challenger_share(shares: ChallengerShares, registry: ModelRegistry, version: str, max_age: float) -> float:
    """The challenger version's share tag (only an alias watcher routes a challenger: it has the registry)."""
    return await shares.share(
        version, lambda: registry.client.get_model_version(registry.model_name, version).tags.get(CANARY_SHARE),
        max_age=max_age)


async def split_route(body: GenerationBody, *, model_name: str, main_alias: str, rollout: str,
                      challenger: str | None, share_of: Callable[[str], Awaitable[float]]) -> Route:
    """The canary decision, on every front door (the built-in engine's and the vLLM backend's):
    ``challenger`` is the version @challenger serves here (None: none), ``share_of`` its share."""
    requested = body.model or model_name
    alias = alias_named(requested, model_name, main_alias)
    if alias != main_alias or main_alias == CHALLENGER or challenger is None:
        return Route(requested, alias)
    share = await share_of(challenger)
    key = body.user or uuid.uuid4().hex
    if rollout == "shadow":  # the champion answers; the share is mirrored, never split
        return Route(requested, alias, shadow=share > 0 and in_challenger_share(key, share, challenger))
    if share <= 0:
        return Route(requested, alias)
    side = CHALLENGER if in_challenger_share(key, share, challenger) else main_alias
    return Route(f"{model_name}@{side}", side, canary=True)


def resolve_route(state: ServingState, route: Route) -> tuple[Route, Lease]:
    """A lease on the route's target; a challenger that went away since it was chosen sends the request to
    the main alias (the route returned says so, for the log)."""
    try:
        return route, state.served.resolve(route.name, known=state.watcher.known())
    except ApiError:
        if not (route.canary and route.alias == CHALLENGER):
            raise
    main = state.config.serving.alias
    route = Route(f"{state.model_name}@{main}", main, canary=True)
    return route, state.served.resolve(route.name, known=state.watcher.known())
