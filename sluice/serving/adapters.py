"""What a request's ``model`` can name, and the LoRA adapters loaded over the served base.

The engine serves one model. When it is a PEFT model (a base with LoRA adapters), every row of a
batch may use another adapter (PEFT's mixed-adapter batches), so several registry versions, or
adapters loaded through ``POST /v1/load_lora_adapter``, are served side by side over one base.

:class:`ServedModels` keeps the table of public names → :class:`Target` (which adapter, which
version answers) and the adapters' lifetimes:

- an adapter is loaded into the PEFT model only on the engine's worker, between decode steps
  (``Engine.call_on_worker``), so that no forward pass races ``load_adapter``/``delete_adapter``;
- a request holds a :class:`Lease` on its target from the moment its name is resolved until its
  answer ends, so an adapter whose name moved on (an alias moved, an unload) is deleted only once
  no request uses it: queued requests included, which the engine's ``adapters_in_use`` cannot see.

Adapters get internal PEFT names (``lora-1``, ``lora-2``, …): public names may contain dots, which
PEFT's module dictionaries refuse, and a name loaded again after an unload is another adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sluice.serving.api import ApiError
from sluice.serving.canary import ChallengerShares
from sluice.serving.engine import Engine, Event, Failed, Finished, LoadedModel

log = logging.getLogger("sluice.serving")

PLACEHOLDER_ADAPTER = "sluice-placeholder"  # a PEFT model needs one adapter; this one is never asked for
SWEEP_RETRY_SECONDS = 0.2


@dataclass(frozen=True)
class Target:
    """What one public name serves: the engine's model, with one of its adapters or without."""

    version: str  # reported in X-Sluice-Model-Version
    root: str  # where it comes from: a models:/ URI or a folder
    adapter: str | None = None  # the PEFT adapter name; None: the model itself
    parent: str | None = None  # the base's public name when it is an adapter (vLLM's "parent")
    model_version: str = ""  # the LoadedModel.version it runs on
    # a registry version (an alias's): it may have a linked system prompt; the base and adapters loaded
    # through the API have none, whatever their names look like
    from_registry: bool = False


@dataclass
class _Adapter:
    owner: LoadedModel  # the model it was loaded into (gone with it)
    path: Path
    in_flight: int = 0  # requests holding a lease on it


@dataclass
class Lease:
    """A request's hold on its target; :meth:`release` (idempotent) once its answer ended."""

    target: Target
    _release: Callable[[], None] = field(repr=False)
    _released: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def release(self) -> None:
        with self._lock:  # the worker (last event) and the event loop (a cancel) may both end it
            released, self._released = self._released, True
        if not released:
            self._release()

    def event_queue(self) -> tuple[asyncio.Queue[Any], Callable[[Event], None]]:
        """A queue on the running event loop, and the callback the engine's thread fills it with; the
        request's last event (finished or failed) ends this lease."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        def emit(event: Event) -> None:
            if isinstance(event, Finished | Failed):
                self.release()
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutdown): nobody is listening
                loop.call_soon_threadsafe(events.put_nowait, event)

        return events, emit


def is_peft(loaded: LoadedModel | None) -> bool:
    return loaded is not None and hasattr(loaded.model, "peft_config")


def as_peft_model(loaded: LoadedModel) -> LoadedModel:
    """Wrap the loaded model for adapters: a PEFT model with a do-nothing placeholder adapter (PEFT
    cannot run a forward pass without one), before it serves (no worker call needed)."""
    import torch
    from peft import LoraConfig, get_peft_model

    if is_peft(loaded):
        return loaded
    linear = next(name.rsplit(".", 1)[-1] for name, module in loaded.model.named_modules()
                  if isinstance(module, torch.nn.Linear) and "lm_head" not in name)
    loaded.model = get_peft_model(loaded.model, LoraConfig(r=1, target_modules=[linear], task_type="CAUSAL_LM"),
                                  adapter_name=PLACEHOLDER_ADAPTER).eval()
    return loaded


class ServedModels:
    """The public names a request's ``model`` may use, and the adapters behind them."""

    def __init__(self, engine: Engine, max_adapters: int):
        self.engine, self.max_adapters = engine, max_adapters
        self._lock = threading.Lock()
        self._names: dict[str, Target] = {}
        self._groups: dict[str, dict[str, Target]] = {}  # who routed which names: an alias, "api", "base"
        self._adapters: dict[str, _Adapter] = {}
        self._counter = itertools.count(1)
        self.base_name: str | None = None  # the installed model's public name when it takes adapters
        self.base_fingerprint: str | None = None
        self.canary_shares = ChallengerShares()  # the share of the default model's traffic @challenger gets

    # -------------------------------------------------- names

    def route(self, group: str, names: dict[str, Target]) -> None:
        """Replace the names ``group`` serves (atomically); adapters no name serves any more are
        deleted once no request holds them."""
        with self._lock:
            self._groups[group] = dict(names)
            self._rebuild()
        self.sweep()

    def route_name(self, group: str, name: str, target: Target | None) -> bool:
        """Add ``name`` → ``target`` to what ``group`` serves (False: the name is served already) or, with None,
        take it out (False: ``group`` does not serve it): checked and changed under the lock, so two requests
        cannot undo each other's change. Adapters no name serves any more are deleted once no request holds them."""
        with self._lock:
            names = self._groups.setdefault(group, {})
            if target is None:
                changed = names.pop(name, None) is not None
            else:
                changed = name not in self._names
                if changed:
                    names[name] = target
            self._rebuild()
        self.sweep()  # also an adapter loaded for a name that was taken meanwhile
        return changed

    def routed(self, group: str) -> dict[str, Target]:
        with self._lock:
            return dict(self._groups.get(group, {}))

    def names(self) -> dict[str, Target]:
        with self._lock:
            return dict(self._names)

    def resolve(self, name: str, *, known: str) -> Lease:
        """A lease on what ``name`` serves; 404 naming ``known`` (what is served) when nothing."""
        with self._lock:
            target = self._names.get(name)
            if target is None:
                raise ApiError(404, f"model {name!r} is not served here; this server serves {known}",
                               param="model", code="model_not_found")
            if target.adapter is not None:
                adapter = self._adapters.get(target.adapter)
                if adapter is None:  # loaded into a model that another base has replaced meanwhile
                    raise ApiError(503, f"model {name!r} went with the base it was loaded over; load it again",
                                   type="server_error", code="model_not_ready")
                adapter.in_flight += 1
        return Lease(target, lambda: self._release(target))

    def _rebuild(self) -> None:
        self._names = {name: target for names in self._groups.values() for name, target in names.items()}

    def _release(self, target: Target) -> None:
        if target.adapter is None:
            return
        with self._lock:
            adapter = self._adapters.get(target.adapter)
            if adapter is None:
                return
            adapter.in_flight -= 1
            idle = adapter.in_flight == 0 and not self._is_routed(target.adapter)
        if idle:  # released on the engine's worker (its last event): the unload must not wait on it
            threading.Thread(target=self.sweep, name="sluice-adapter-unload", daemon=True).start()

    def _is_routed(self, adapter: str) -> bool:
        return any(t.adapter == adapter for t in self._names.values())

    # -------------------------------------------------- the installed model

    def install(self, loaded: LoadedModel, *, base_name: str | None, base_fingerprint: str | None,
                names: dict[str, dict[str, Target]], timeout: float | None = None) -> None:
        """Serve ``loaded`` (its adapters already loaded, see :meth:`adapters_of`) with ``names`` (by
        group) instead of everything routed before; adapters of the old model go with it."""
        with self._lock:
            dropped = sorted(set(self._groups.get("api", {})) - set(names.get("api", {})))
            if dropped:  # adapters loaded over the old base do not fit the new one
                log.warning("a new model is installed: the LoRA adapters loaded through the API (%s) are unloaded",
                            ", ".join(dropped))
            self._groups = {group: dict(targets) for group, targets in names.items()}
            self._rebuild()
            self._adapters = {n: a for n, a in self._adapters.items() if a.owner is loaded}
            self.base_name, self.base_fingerprint = base_name, base_fingerprint
        if not self.engine.install(loaded, timeout=timeout):
            raise TimeoutError(f"the engine did not swap in version {loaded.version} within {timeout} s")

    def preload_adapter(self, loaded: LoadedModel, path: Path) -> str:
        """Load an adapter into a model that does not serve yet (no worker call: nothing runs on it)."""
        name = f"lora-{next(self._counter)}"
        _load_into(loaded, name, path)
        with self._lock:
            self._adapters[name] = _Adapter(owner=loaded, path=path)
        return name

    # -------------------------------------------------- adapters over the serving model

    def load_adapter(self, path: Path, *, counted: bool = True, timeout: float | None = 300) -> str:
        """Load a PEFT adapter folder into the serving model (on the worker); its internal name.
        ``counted``: refused past ``max_adapters`` (aliases' adapters are not: the registry decides)."""
        loaded = self.engine.model
        if not is_peft(loaded):
            raise ApiError(400, "the served model does not take LoRA adapters (it is a merged or full model, or "
                                "LoRA is not enabled)", code="lora_not_enabled")
        assert loaded is not None
        if counted and self.loaded_count() >= self.max_adapters:
            raise ApiError(400, f"{self.max_adapters} LoRA adapters are loaded already (serving.max_adapters / "
                                "--max-loras): unload one first", code="too_many_adapters")
        _check_adapter_folder(path)
        name = f"lora-{next(self._counter)}"
        started = time.perf_counter()
        self.engine.call_on_worker(lambda: _load_into(loaded, name, path), timeout=timeout)
        with self._lock:
            self._adapters[name] = _Adapter(owner=loaded, path=path)
        log.info("LoRA adapter %s loaded from %s in %.2f s", name, path, time.perf_counter() - started)
        return name

    def loaded_count(self) -> int:
        """Adapters loaded and still served by some name (those on their way out do not count)."""
        with self._lock:
            return sum(1 for name in self._adapters if self._is_routed(name))

    def loaded_adapters(self) -> set[str]:
        with self._lock:
            return set(self._adapters)

    def sweep(self) -> None:
        """Delete the adapters that no name serves and no request holds (on the engine's worker)."""
        with self._lock:
            idle = [n for n, a in self._adapters.items() if a.in_flight == 0 and not self._is_routed(n)]
        if idle and self.engine.call_on_worker(lambda: self._delete_idle(idle), timeout=60):
            timer = threading.Timer(SWEEP_RETRY_SECONDS, self.sweep)  # a row still decoding held one: again soon
            timer.daemon = True
            timer.start()

    def _delete_idle(self, candidates: list[str]) -> bool:
        """On the worker: delete the candidates still idle; True if a running row (one cancelled since its
        lease ended, leaving at the next step) kept one."""
        running = self.engine.adapters_in_use()
        kept = False
        for name in candidates:
            with self._lock:
                adapter = self._adapters.get(name)
                if name in running:
                    kept = True
                if adapter is None or adapter.in_flight or self._is_routed(name) or name in running:
                    continue
                del self._adapters[name]
            if adapter.owner is self.engine.model and name in adapter.owner.model.peft_config:
                adapter.owner.model.delete_adapter(name)
                log.info("LoRA adapter %s (%s) unloaded: no name serves it and no request uses it", name,
                         adapter.path)
        return kept


def _check_adapter_folder(path: Path) -> None:
    if not (path / "adapter_config.json").is_file():
        raise ApiError(400, f"no PEFT adapter at {str(path)!r}: no adapter_config.json there", param="lora_path",
                       code="invalid_value")


def _load_into(loaded: LoadedModel, name: str, path: Path) -> None:
    model: Any = loaded.model
    model.load_adapter(str(path), adapter_name=name, is_trainable=False)
    model.eval()  # PEFT refuses adapter_names in training mode
