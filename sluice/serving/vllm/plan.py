"""The decisions of the vLLM backend, as plain functions over plain data: what an alias move
takes (:func:`plan_alias_move`), which alias a request's ``model`` names (:func:`alias_for_model`),
and the names the engines know models by.

Nothing here starts a process or talks HTTP: :mod:`sluice.serving.vllm.follower` carries the
steps out, in order, against the running replica sets.

A *replica set* is ``serving.vllm_replicas`` engine processes on one model folder, named by its
key: ``base:<fingerprint>`` for a LoRA base (started with ``--enable-lora``; every LoRA version
trained over that base is an adapter in it) or ``full:<version>`` for a full fine-tune's merged
folder. A *route* is what an alias serves now: a set and the name the engines know the model by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wanted:
    """What an alias names, resolved to local files."""

    alias: str
    version: str
    model_dir: Path  # what the engines load: the base (LoRA) or the merged model (full fine-tune)
    set_key: str  # base:<fingerprint> | full:<version>
    adapter_dir: Path | None = None  # LoRA: the PEFT adapter folder

    @property
    def is_lora(self) -> bool:
        return self.adapter_dir is not None


@dataclass(frozen=True)
class Route:
    """What an alias serves now."""

    alias: str
    version: str
    set_key: str
    engine_model: str  # the request's `model` the engines know: an adapter's lora_name, or the set's served name
    adapter: bool  # True: engine_model is a LoRA adapter loaded into every replica of the set


@dataclass(frozen=True)
class StartSet:
    key: str
    model_dir: Path
    served_name: str
    lora: bool  # start with --enable-lora (a base that adapters go into)


@dataclass(frozen=True)
class LoadAdapter:
    key: str
    name: str
    path: Path


@dataclass(frozen=True)
class Switch:
    route: Route


@dataclass(frozen=True)
class UnloadAdapter:
    """Unload once the requests already sent to it have finished (drain)."""

    key: str
    name: str


@dataclass(frozen=True)
class StopSet:
    """Stop once the requests already sent to it have finished (drain)."""

    key: str


@dataclass(frozen=True)
class Unroute:
    """The alias serves nothing any more (an extra alias deleted, e.g. @challenger after its trial)."""

    alias: str


Step = StartSet | LoadAdapter | Switch | Unroute | UnloadAdapter | StopSet


def lora_set_key(base_fingerprint: str) -> str:
    return f"base:{base_fingerprint}"


def full_set_key(version: str) -> str:
    return f"full:{version}"


def engine_model_name(model_name: str, version: str) -> str:
    """The name a version has inside the engines (adapter name or served model name)."""
    return f"{model_name}-v{version}"


def base_served_name(model_name: str) -> str:
    """The served name of a LoRA base set (requests always name one of its adapters)."""
    return f"{model_name}-base"


def route_for(wanted: Wanted, model_name: str) -> Route:
    return Route(alias=wanted.alias, version=wanted.version, set_key=wanted.set_key,
                 engine_model=engine_model_name(model_name, wanted.version), adapter=wanted.is_lora)


def plan_alias_move(current: Route | None, wanted: Wanted, *, model_name: str, running: Iterable[str],
                    other_routes: Iterable[Route]) -> list[Step]:
    """The steps that move one alias from ``current`` to ``wanted`` without dropping a request.

    ``running``: the keys of the replica sets already up; ``other_routes``: what the other aliases
    serve (a set or adapter they still use is neither stopped nor unloaded). The new model is
    ready in every replica before the switch; the old one is drained before it goes.
    """
    if current is not None and current.version == wanted.version and current.set_key == wanted.set_key:
        return []
    others = [r for r in other_routes if r.alias != wanted.alias]
    new = route_for(wanted, model_name)
    steps: list[Step] = []
    if wanted.set_key not in set(running):
        served = base_served_name(model_name) if wanted.is_lora else new.engine_model
        steps.append(StartSet(wanted.set_key, wanted.model_dir, served, lora=wanted.is_lora))
    if wanted.is_lora and not any(r.set_key == new.set_key and r.engine_model == new.engine_model for r in others):
        assert wanted.adapter_dir is not None
        steps.append(LoadAdapter(wanted.set_key, new.engine_model, wanted.adapter_dir))
    steps.append(Switch(new))
    return steps + _release_old(current, new, others)


def plan_alias_removal(current: Route, *, other_routes: Iterable[Route]) -> list[Step]:
    """The steps that stop serving an alias that names nothing any more: no new request reaches it, then
    what only it used is drained and unloaded (or stopped)."""
    others = [r for r in other_routes if r.alias != current.alias]
    return [Unroute(current.alias), *_release_old(current, None, others)]


def _release_old(current: Route | None, new: Route | None, others: list[Route]) -> list[Step]:
    """Unload the adapter or stop the set ``current`` used, unless ``new`` or another alias still uses it."""
    if current is None:
        return []
    users = [*others, *([new] if new is not None else [])]
    if not any(r.set_key == current.set_key for r in users):
        return [StopSet(current.set_key)]  # its adapters go with it
    if current.adapter and not any(r.set_key == current.set_key and r.engine_model == current.engine_model
                                   for r in users):
        return [UnloadAdapter(current.set_key, current.engine_model)]
    return []


def alias_for_model(requested: str | None, *, model_name: str, aliases: list[str],
                    routes: dict[str, Route]) -> str | None:
    """The alias a request's ``model`` names: empty, ``<name>`` (the first of ``aliases``: the
    main one), ``<name>@<alias>``, ``models:/<name>@<alias>`` or ``<name>/<version>`` (a version
    some alias serves now); None when it names nothing served here."""
    main = aliases[0]
    if not requested or requested == model_name:
        return main
    for prefix in (f"models:/{model_name}@", f"{model_name}@"):
        if requested.startswith(prefix):
            alias = requested.removeprefix(prefix)
            return alias if alias in aliases else None
    if requested.startswith(f"{model_name}/"):
        version = requested.removeprefix(f"{model_name}/")
        serving = sorted(a for a, r in routes.items() if r.version == version)
        return (main if main in serving else serving[0]) if serving else None
    return None
