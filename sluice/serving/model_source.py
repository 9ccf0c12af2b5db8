"""Where the served model comes from: ``models:/<name>@<alias>`` in the MLflow
registry, downloaded into ``<state_dir>/models/<version>``, and watched.

The registry is read through the same client the registry tasks use
(:class:`~sluice.core.registry.client.ModelRegistry`, on an explicit tracking
URI), so serving needs no Prefect run and can live beside other MLflow users
in one process.

The :class:`AliasWatcher` checks the alias every ``watch_seconds`` (and at
once on :meth:`AliasWatcher.check_now`, behind ``POST /admin/reload``). A new
version is downloaded and loaded on the watcher's thread while the engine
keeps serving the old one, then installed between batches. A version that
fails to download or load is reported in ``/health`` and not retried by the
timer until the alias moves again (``check_now`` retries it).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sluice.core.registry.client import ModelRegistry
from sluice.serving.engine import Engine, load_model

log = logging.getLogger("sluice.serving")


def prune_versions(models_dir: Path, keep: set[str]) -> None:
    """Remove downloaded versions other than ``keep`` and leftovers of interrupted downloads."""
    if not models_dir.is_dir():
        return
    for path in models_dir.iterdir():
        if path.is_dir() and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


@dataclass
class WatchStatus:
    alias_version: str | None = None  # where the alias pointed at the last check
    loading: str | None = None  # a version being downloaded or loaded now
    last_check: float | None = None  # time.time() of the last finished check
    last_error: str | None = None  # the last check's error (None after a clean check)
    failed: dict[str, str] = field(default_factory=dict)  # version → why it could not be served


class AliasWatcher:
    """Keeps the engine on ``models:/<model_name>@<alias>``."""

    def __init__(self, *, engine: Engine, registry: ModelRegistry, alias: str, models_dir: Path, interval: float):
        self.engine, self.registry, self.alias = engine, registry, alias
        self.models_dir, self.interval = models_dir, interval
        self.status = WatchStatus()
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def uri(self) -> str:
        return self.registry.uri(self.alias)

    def check_now(self, *, retry_failed: bool = True, install_timeout: float | None = None) -> str | None:
        """Look at the alias; if it names another version, download, load and install it. Returns the
        version served afterwards (None: none yet). Raises when the registry cannot be read or the
        new version cannot be served (the old one keeps serving)."""
        with self._check_lock:
            try:
                version = self.registry.alias_version(self.alias)
            except Exception as error:
                self.status.last_error = f"cannot read {self.uri} from the registry: {error}"
                raise
            finally:
                self.status.last_check = time.time()
            self.status.alias_version = version
            served = self.engine.version
            if version is None or version == served:
                self.status.last_error = None
                return served
            if version in self.status.failed and not retry_failed:
                return served
            self.status.loading = version
            started = time.perf_counter()
            try:
                path = self.registry.download(version, self.models_dir)
                model = load_model(version, path)
                self.engine.install(model, timeout=install_timeout)
            except Exception as error:
                why = f"cannot serve {self.registry.model_name} version {version}: {type(error).__name__}: {error}"
                self.status.failed[version] = why
                self.status.last_error = why
                log.error("%s; still serving %s", why, served or "nothing")
                raise
            finally:
                self.status.loading = None
            self.status.failed.pop(version, None)
            self.status.last_error = None
            log.info("%s: now serving version %s (was %s; download and load %.1f s)", self.uri, version,
                     served or "none", time.perf_counter() - started)
            prune_versions(self.models_dir, {v for v in (version, served) if v})
            return self.engine.version

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
                reported = None
            except Exception as error:  # also in /health; the next tick tries again
                if str(error) != reported:
                    log.warning("checking %s failed (retrying every %.0f s): %s", self.uri, self.interval, error)
                    reported = str(error)
            if self._stop.wait(self.interval):
                return
