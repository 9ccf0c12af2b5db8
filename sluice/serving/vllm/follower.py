"""The engines follow the registry aliases: each of ``serving.alias`` and ``serving.extra_aliases``
is looked up every ``watch_seconds`` (and at once on :meth:`AliasFollower.check_now`); a moved
alias is carried out with :func:`~sluice.serving.vllm.plan.plan_alias_move`'s steps:

- a LoRA version over a base already running: its adapter is loaded into every replica, the
  alias's route switches to it, and the old adapter is unloaded once its requests finished;
- a full fine-tune (or a LoRA over another base): a new replica set starts beside the old one,
  the route switches once all its replicas are healthy, and the old set is drained and stopped.

An extra alias that names nothing any more (``@challenger`` once its trial ends) is no longer
routed, and its adapter is unloaded (its set stopped) once drained, unless another alias uses it.
A version that cannot be served is reported in ``/health`` and not retried by the timer until its
alias moves again (``check_now`` retries it); the old version keeps serving meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sluice.core.registry.client import ModelRegistry
from sluice.serving.vllm.plan import (
    LoadAdapter,
    StartSet,
    Step,
    StopSet,
    Switch,
    UnloadAdapter,
    Unroute,
    Wanted,
    full_set_key,
    lora_set_key,
    plan_alias_move,
    plan_alias_removal,
)
from sluice.serving.vllm.replicas import EngineCommand, ReplicaSet
from sluice.serving.vllm.router import Router

log = logging.getLogger("sluice.serving.vllm")

DRAIN_TIMEOUT_S = 600.0  # longer than any generation the limits allow; then the old model goes anyway


@dataclass
class AliasStatus:
    alias_version: str | None = None  # where the alias pointed at the last check
    loading: str | None = None
    last_error: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # version → why it could not be served


class AliasFollower:
    """Keeps the replica sets and the router on what the aliases name."""

    def __init__(self, *, registry: ModelRegistry, aliases: list[str], router: Router, engine: EngineCommand,
                 replicas: int, models_dir: Path, log_dir: Path, interval: float):
        self.registry, self.aliases, self.router = registry, aliases, router
        self.engine, self.replica_count, self.interval = engine, replicas, interval
        self.models_dir, self.log_dir = models_dir, log_dir
        self.sets: dict[str, ReplicaSet] = {}
        self._starting: ReplicaSet | None = None  # a set being started (stop() cancels it)
        self.status = {alias: AliasStatus() for alias in aliases}
        self.last_check: float | None = None
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def model_name(self) -> str:
        return self.registry.model_name

    # -------------------------------------------------------------- following

    def check_now(self, *, retry_failed: bool = True) -> dict[str, str | None]:
        """Bring every alias to the version it names; the versions served afterwards. Raises the
        first alias's error (the others are still followed; each error is in ``status``)."""
        with self._check_lock:
            errors = []
            for alias in self.aliases:
                try:
                    self._follow(alias, retry_failed)
                except Exception as error:
                    errors.append(error)
            self.last_check = time.time()
            if errors:
                raise errors[0]
            routes = self.router.routes()
            return {alias: routes[alias].version if alias in routes else None for alias in self.aliases}

    def _follow(self, alias: str, retry_failed: bool) -> None:
        status = self.status[alias]
        try:
            version = self.registry.alias_version(alias)
        except Exception as error:
            status.last_error = f"cannot read {self.registry.uri(alias)} from the registry: {error}"
            raise
        status.alias_version = version
        current = self.router.routes().get(alias)
        if version is None and current is not None and alias != self.aliases[0]:
            # an extra alias deleted (@challenger after its trial): stop routing to it, free what only it used
            self.carry_out(plan_alias_removal(current, other_routes=self.router.routes().values()))
            log.info("%s names nothing now: no longer serving version %s", self.registry.uri(alias), current.version)
        if version is None or (current is not None and current.version == version):
            status.last_error = None
            return
        if version in status.failed and not retry_failed:
            return
        status.loading = version
        started = time.perf_counter()
        try:
            wanted = self.resolve(alias, version)
            steps = plan_alias_move(current, wanted, model_name=self.model_name, running=self.sets,
                                    other_routes=self.router.routes().values())
            self.carry_out(steps)
        except Exception as error:
            why = f"cannot serve {self.model_name} version {version}: {type(error).__name__}: {error}"
            status.failed[version], status.last_error = why, why
            log.error("%s; %s still serves %s", why, self.registry.uri(alias), current.version if current else
                      "nothing")
            self._stop_unrouted()
            raise
        finally:
            status.loading = None
        status.failed.pop(version, None)
        status.last_error = None
        log.info("%s: now serving version %s (was %s; %.1f s)", self.registry.uri(alias), version,
                 current.version if current else "none", time.perf_counter() - started)

    def resolve(self, alias: str, version: str) -> Wanted:
        """The version's files: a LoRA's adapter and its base folder, or a full fine-tune's merged folder."""
        from sluice.core.models.base_model import resolve_base_model

        adapter = self.registry.download_adapter(version, self.models_dir)
        if adapter is None:
            path = self.registry.download(version, self.models_dir)
            return Wanted(alias=alias, version=version, model_dir=path, set_key=full_set_key(version))
        base = resolve_base_model(adapter.base_model, self.models_dir / "bases", self.registry.target)
        return Wanted(alias=alias, version=version, model_dir=Path(base.path),
                      set_key=lora_set_key(adapter.base_fingerprint), adapter_dir=adapter.path)

    def carry_out(self, steps: list[Step]) -> None:
        for step in steps:
            log.info("alias move step: %s", step)
            if isinstance(step, StartSet):
                replica_set = ReplicaSet(step.key, model_dir=step.model_dir, served_name=step.served_name,
                                         lora=step.lora, count=self.replica_count, engine=self.engine,
                                         log_dir=self.log_dir)
                self._starting = replica_set
                try:
                    replica_set.start()
                finally:
                    self._starting = None
                self.sets[step.key] = replica_set
            elif isinstance(step, LoadAdapter):
                self.sets[step.key].load_adapter(step.name, step.path)
            elif isinstance(step, Switch):
                self.router.switch(step.route)
            elif isinstance(step, Unroute):
                self.router.remove(step.alias)
            elif isinstance(step, UnloadAdapter):
                self._drain(step.key, step.name)
                self.sets[step.key].unload_adapter(step.name)
            elif isinstance(step, StopSet):
                self._drain(step.key, None)
                self.sets.pop(step.key).stop()

    def _stop_unrouted(self) -> None:
        """Stop the sets a failed move started and no alias routes to."""
        routed = {route.set_key for route in self.router.routes().values()}
        for key in [k for k in self.sets if k not in routed]:
            self.sets.pop(key).stop()

    def _drain(self, key: str, engine_model: str | None) -> None:
        if not self.router.wait_idle(key, engine_model, DRAIN_TIMEOUT_S):
            log.warning("%s still had %d request(s) after %.0f s of draining; going on", engine_model or key,
                        self.router.in_flight(key, engine_model), DRAIN_TIMEOUT_S)

    # -------------------------------------------------------------- the thread

    def start(self) -> AliasFollower:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sluice-vllm-follower", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop following and stop every engine."""
        self._stop.set()
        starting = self._starting
        if starting is not None:
            starting.stop()
        if self._thread is not None:
            self._thread.join(60)
        with self._check_lock:
            for replica_set in list(self.sets.values()):
                replica_set.stop()
            self.sets.clear()

    def _run(self) -> None:
        reported = None
        while not self._stop.is_set():
            try:
                self.check_now(retry_failed=False)
                reported = None
            except Exception as error:  # also in /health; the next tick tries again
                if str(error) != reported:
                    log.warning("following %s failed (retrying every %.0f s): %s", self.aliases, self.interval,
                                error)
                    reported = str(error)
            if self._stop.wait(self.interval):
                return
