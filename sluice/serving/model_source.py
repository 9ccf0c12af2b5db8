"""Where the served models come from: ``models:/<name>@<alias>`` for ``serving.alias`` and each of
``serving.extra_aliases`` in the MLflow registry, downloaded into ``<state_dir>/models``, and watched.

The registry is read through the same client the registry tasks use
(:class:`~sluice.core.registry.client.ModelRegistry`, on an explicit tracking URI), so serving
needs no Prefect run and can live beside other MLflow users in one process.

The :class:`AliasWatcher` checks the aliases every ``watch_seconds`` (and at once on
:meth:`AliasWatcher.check_now`, behind ``POST /admin/reload``). How a version is served
(:func:`plan_version`):

- a LoRA version whose base (by fingerprint) is the base already loaded: only its adapter is
  loaded, into the serving PEFT model, and its names switch to it atomically; the old adapter is
  deleted once no request uses it;
- a LoRA version of the main alias with no matching base loaded, whose base reference resolves
  here to the same fingerprint: the base is loaded once as a PEFT model with this adapter, and
  swapped in (later LoRA versions over it load only their adapter);
- anything else (a full fine-tune, a base that cannot be had or whose files differ): the merged
  model, swapped in whole (the log says why). An extra alias whose version cannot be an adapter
  over the loaded base is not served (``/health`` says why): the engine holds one model.

A new model is loaded on the watcher's thread while the engine keeps serving the old one, then
installed between decode steps. A version that fails to download or load is reported in
``/health`` and not retried by the timer until the alias moves again (``check_now`` retries it).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from sluice.core.registry.client import AdapterFiles, ModelRegistry
from sluice.serving.adapters import ServedModels, Target, as_peft_model, is_peft
from sluice.serving.engine import Engine, load_model

log = logging.getLogger("sluice.serving")
BASES_DIR = "bases"  # under models_dir: base models resolved for LoRA versions

Plan = Literal["adapter", "base_and_adapter", "merged"]


def plan_version(adapter: AdapterFiles | None, loaded_base_fingerprint: str | None, *, main_alias: bool) -> Plan:
    """How a version is served: only its adapter (over the loaded base), the base once with its
    adapter (main alias, no matching base loaded; if the base cannot be had: merged), or merged."""
    if adapter is None:
        return "merged"
    if loaded_base_fingerprint is not None and adapter.base_fingerprint == loaded_base_fingerprint:
        return "adapter"
    return "base_and_adapter" if main_alias else "merged"


def prune_versions(models_dir: Path, keep: set[str]) -> None:
    """Remove downloaded versions other than ``keep`` (and the bases) and leftovers of interrupted downloads."""
    if not models_dir.is_dir():
        return
    for path in models_dir.iterdir():
        if path.is_dir() and path.name not in keep | {BASES_DIR}:
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class WatchStatus:
    alias_version: str | None = None  # where the main alias pointed at the last check
    loading: str | None = None  # a version being downloaded or loaded now
    last_check: float | None = None  # time.time() of the last finished check
    last_error: str | None = None  # the last check's error (None after a clean check)
    failed: dict[str, str] = field(default_factory=dict)  # version → why it could not be served
    extra: dict[str, str | None] = field(default_factory=dict)  # extra alias → the version it names
    extra_errors: dict[str, str] = field(default_factory=dict)  # extra alias → why it is not served


class CannotServe(RuntimeError):
    """An extra alias's version cannot be served beside the main alias's model."""


class AliasWatcher:
    """Keeps the engine on ``models:/<model_name>@<alias>`` and the extra aliases."""

    def __init__(self, *, engine: Engine, served: ServedModels, registry: ModelRegistry, alias: str,
                 models_dir: Path, interval: float, extra_aliases: list[str] | None = None,
                 on_served: Callable[[str, str | None], None] | None = None):
        self.engine, self.served, self.registry, self.alias = engine, served, registry, alias
        self.extra_aliases = [a for a in dict.fromkeys(extra_aliases or []) if a != alias]
        self.models_dir, self.interval = models_dir, interval
        self._on_served = on_served or (lambda alias, version: None)  # alias, the version serving it (telemetry)
        self.status = WatchStatus()
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return self.registry.uri(self.alias)

    @property
    def model_name(self) -> str:
        return self.registry.model_name

    def served_version(self, alias: str | None = None) -> str | None:
        """The version answering for ``alias`` (default: the main one) now."""
        target = self.served.routed(alias or self.alias).get(f"{self.model_name}@{alias or self.alias}")
        return target.version if target else None

    def names_for(self, alias: str, target: Target) -> dict[str, Target]:
        """The request ``model`` names that pick ``alias``'s version."""
        name, version = self.model_name, target.version
        names = {f"{name}@{alias}": target, f"models:/{name}@{alias}": target, f"{name}/{version}": target,
                 f"models:/{name}/{version}": target}
        if alias == self.alias:
            names[name] = target
        return names

    def known(self) -> str:
        """What requests may name, for error messages."""
        served = sorted(n for n in self.served.names() if not n.startswith("models:/"))
        return ", ".join(repr(n) for n in served) or f"nothing yet ({self.uri} is not served)"

    # -------------------------------------------------- checking

    def check_now(self, *, retry_failed: bool = True, install_timeout: float | None = None) -> str | None:
        """Look at the aliases; serve the versions they name now. Returns the main alias's version
        served afterwards (None: none yet). Raises when the registry cannot be read or the main
        alias's new version cannot be served (the old one keeps serving)."""
        with self._check_lock:
            try:
                versions = {a: self.registry.alias_version(a) for a in [self.alias, *self.extra_aliases]}
            except Exception as error:
                self.status.last_error = f"cannot read {self.uri} from the registry: {error}"
                raise
            finally:
                self.status.last_check = time.time()
            version = self.status.alias_version = versions.pop(self.alias)
            served = self.served_version()
            if version is not None and version != served and (retry_failed or version not in self.status.failed):
                self._serve_main(version, served, install_timeout)
            self.status.last_error = None
            for alias, extra_version in versions.items():
                self._serve_extra(alias, extra_version, retry_failed)
            prune_versions(self.models_dir, self._kept_folders())
            return self.served_version()

    def _serve_main(self, version: str, served: str | None, install_timeout: float | None) -> None:
        self.status.loading = version
        started = time.perf_counter()
        try:
            how = self._serve_main_version(version, install_timeout)
        except Exception as error:
            why = f"cannot serve {self.model_name} version {version}: {type(error).__name__}: {error}"
            self.status.failed[version] = why
            self.status.last_error = why
            log.error("%s; still serving %s", why, served or "nothing")
            raise
        finally:
            self.status.loading = None
        self.status.failed.pop(version, None)
        self._on_served(self.alias, version)
        log.info("%s: now serving version %s (was %s; %s in %.2f s)", self.uri, version, served or "none", how,
                 time.perf_counter() - started)

    def _serve_main_version(self, version: str, install_timeout: float | None) -> str:
        adapter = self.registry.download_adapter(version, self.models_dir)
        plan = plan_version(adapter, self.served.base_fingerprint if is_peft(self.engine.model) else None,
                            main_alias=True)
        if plan == "adapter":
            assert adapter is not None
            self.served.route(self.alias, self.names_for(self.alias, self._adapter_target(version, adapter)))
            return "its LoRA adapter loaded over the base already served"
        if plan == "base_and_adapter":
            assert adapter is not None
            base_path = self._base_path(adapter)
            if base_path is not None:
                self._install_base_with(version, adapter, base_path, install_timeout)
                return f"base {adapter.base_model} loaded once with its LoRA adapter"
        loaded = load_model(version, self.registry.download(version, self.models_dir))
        target = Target(version=version, root=self.registry.uri(self.alias), model_version=version,
                        from_registry=True)
        self.served.install(loaded, base_name=None, base_fingerprint=None,
                            names={self.alias: self.names_for(self.alias, target)}, timeout=install_timeout)
        return "merged model downloaded and loaded" if adapter is None else "merged model (see above why)"

    def _adapter_target(self, version: str, adapter: AdapterFiles) -> Target:
        name = self.served.load_adapter(adapter.path, counted=False)
        return Target(version=version, root=str(adapter.path), adapter=name, parent=self.served.base_name,
                      model_version=self.engine.version or "", from_registry=True)

    def _base_path(self, adapter: AdapterFiles) -> Path | None:
        """The adapter's base as a local folder with the fingerprint it was trained over; None (and
        why, in the log) when it cannot be had here."""
        from sluice.core.models.base_model import resolve_base_model

        try:
            base = resolve_base_model(adapter.base_model, self.models_dir / BASES_DIR, self.registry.target)
        except Exception as error:
            log.warning("version %s is a LoRA adapter, but its base %r cannot be had here (%s): serving the merged "
                        "model instead", adapter.version, adapter.base_model, error)
            return None
        if base.fingerprint != adapter.base_fingerprint:
            log.warning("version %s is a LoRA adapter over %r, but that base's files here differ from those it was "
                        "trained over (%s, not %s): serving the merged model instead", adapter.version,
                        adapter.base_model, base.fingerprint[:19], adapter.base_fingerprint[:19])
            return None
        return Path(base.path)

    def _install_base_with(self, version: str, adapter: AdapterFiles, base_path: Path,
                           install_timeout: float | None) -> None:
        label = f"base-{adapter.base_fingerprint.split(':')[-1][:12]}"
        loaded = as_peft_model(load_model(label, base_path))
        name = self.served.preload_adapter(loaded, adapter.path)
        base_name = adapter.base_model
        target = Target(version=version, root=str(adapter.path), adapter=name, parent=base_name,
                        model_version=label, from_registry=True)
        names = {self.alias: self.names_for(self.alias, target),
                 "base": {base_name: Target(version=label, root=str(base_path), model_version=label)}}
        self.served.install(loaded, base_name=base_name, base_fingerprint=adapter.base_fingerprint, names=names,
                            timeout=install_timeout)

    def _serve_extra(self, alias: str, version: str | None, retry_failed: bool) -> None:
        """Serve an extra alias's version beside the main one; why not, in the status and the log."""
        self.status.extra[alias] = version
        current = self.served.routed(alias).get(f"{self.model_name}@{alias}")
        if current is not None and current.version == version and current.model_version == self.engine.version:
            return
        if version is None:
            self.served.route(alias, {})
            self.status.extra_errors.pop(alias, None)
            self._on_served(alias, None)
            return
        key = f"{alias}:{version}"
        if key in self.status.failed and not retry_failed:
            return
        try:
            target = self._extra_target(alias, version)
        except Exception as error:
            why = f"cannot serve {self.registry.uri(alias)} (version {version}): {error}"
            self.status.failed[key] = self.status.extra_errors[alias] = why
            self.served.route(alias, {})
            self._on_served(alias, None)
            log.error("%s", why)
            return
        self.served.route(alias, self.names_for(alias, target))
        self._on_served(alias, version)
        self.status.failed.pop(key, None)
        self.status.extra_errors.pop(alias, None)
        log.info("%s: now serving version %s", self.registry.uri(alias), version)

    def _extra_target(self, alias: str, version: str) -> Target:
        served = self.served.names().get(f"{self.model_name}/{version}")  # served under another alias already
        if served is not None and served.model_version == self.engine.version:
            return served
        adapter = self.registry.download_adapter(version, self.models_dir)
        loaded_base = self.served.base_fingerprint if is_peft(self.engine.model) else None
        if plan_version(adapter, loaded_base, main_alias=False) != "adapter":
            raise CannotServe(f"it is {'a full fine-tune' if adapter is None else 'a LoRA adapter over another base'}"
                              f", and this server holds one model ({self.uri}, version {self.served_version()}); "
                              "only LoRA versions over the same base are served side by side")
        assert adapter is not None
        return self._adapter_target(version, adapter)

    def _kept_folders(self) -> set[str]:
        versions = {t.version for t in self.served.names().values()}
        return versions | {f"{v}-adapter" for v in versions}

    # -------------------------------------------------- the thread

    def start(self) -> AliasWatcher:
        """Check now and then every ``interval`` seconds, on a thread of its own."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sluice-serving-watcher", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        reported = None
        while not self._stop.is_set():
            try:
                self.check_now(retry_failed=False)
                self.served.sweep()  # adapters a cancelled row held at the last try
                reported = None
            except Exception as error:  # also in /health; the next tick tries again
                if str(error) != reported:
                    log.warning("checking %s failed (retrying every %.0f s): %s", self.uri, self.interval, error)
                    reported = str(error)
            if self._stop.wait(self.interval):
                return
