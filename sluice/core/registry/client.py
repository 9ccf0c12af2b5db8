"""The model registry client: one registered model in one MLflow store.

Shared by the registry tasks (register a version, move aliases) and by
serving (follow an alias, download its version). Calls go through a client
on an explicit tracking URI, never the process-wide MLflow settings, so the
registry of one store is never confused with another's.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from sluice.core.lineage import PROMPT_TAG_PREFIX, PROMPTS_DIGEST
from sluice.core.registry.logged_model import find_logged_model
from sluice.core.registry.tracking import TrackingTarget, mlflow_client

CHAMPION, PREVIOUS = "champion", "previous"
CHALLENGER = "challenger"  # promotion.rollout canary: the version on trial, with a share of traffic
COMPLETE = ".sluice-complete"  # written last in a downloaded version: a folder without it is an interrupted download


class AdapterFiles(BaseModel):
    """A LoRA version's adapter, downloaded, and the base it was trained over."""

    version: str
    path: Path  # a PEFT adapter folder (adapter_config.json, adapter weights, tokenizer)
    base_model: str  # training.base_model as given: a folder, a Hub id or models:/name@alias
    base_fingerprint: str  # the base's files (sluice.core.models.base_model.base_model_fingerprint)


class ModelVersionRef(BaseModel):
    name: str
    version: str
    run_id: str | None
    source: str
    created: bool  # False: the version existed already (a rerun), nothing was registered


_STORE_URI_LOCK = threading.Lock()


@contextmanager
def _registry_store_sees(target: TrackingTarget) -> Iterator[None]:
    """For one registry call, MLflow's process-wide tracking URI on the embedded store, under a lock.
    Only there: with MLFLOW_TRACKING_URI set (a server, or a store named by it) MLflow already resolves
    to it, and setting the global URI would rewrite that variable."""
    if not target.embedded:
        yield
        return
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _STORE_URI_LOCK, _use_tracking_uri(target.tracking_uri):
        yield


def _missing(error: Exception) -> bool:
    return getattr(error, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


class ModelRegistry:
    """``models:/<model_name>`` in the store of ``target``."""

    def __init__(self, target: TrackingTarget, model_name: str):
        self.target, self.model_name = target, model_name
        self.client = mlflow_client(target.tracking_uri)

    def uri(self, alias: str) -> str:
        return f"models:/{self.model_name}@{alias}"

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at; None when the model or the alias does not exist (and only then)."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(self.model_name, alias).version)
        except MlflowException as error:
            # no such model: RESOURCE_DOES_NOT_EXIST; no such alias: INVALID_PARAMETER_VALUE "... alias X not found"
            message = str(error).lower()
            if _missing(error) or ("alias" in message and "not found" in message):
                return None
            raise

    def set_alias(self, alias: str, version: str | None) -> None:
        """Point ``alias`` at ``version``; None deletes the alias."""
        if version is None:
            self.client.delete_registered_model_alias(self.model_name, alias)
        else:
            self.client.set_registered_model_alias(self.model_name, alias, version)

    def register(self, training_run_id: str, tags: dict[str, str], description: str = "") -> ModelVersionRef:
        """Register the training run's model, once: a rerun finds the version it registered before instead of
        adding a duplicate (with ``tags`` naming a prompts digest, the version with the same prompts). The
        version's source is the run's logged model (``models:/m-…``); a run logged before there were logged
        models registers its ``model`` artifact folder, as it always did."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(self.model_name,
                                                description="Fine-tuned by Sluicegate; @champion is served.")
        except MlflowException as error:
            if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                raise
        existing = self.client.search_model_versions(f"name = '{self.model_name}' and run_id = '{training_run_id}'")
        if PROMPTS_DIGEST in tags:  # the same weights with other prompts are another version: a new candidate
            # (a version without a digest was registered before prompts were tracked: it is reused, and tagged)
            existing = [v for v in existing if v.tags.get(PROMPTS_DIGEST) in (tags[PROMPTS_DIGEST], None)]
        if existing:
            version = max(existing, key=lambda v: int(v.version))
            if PROMPTS_DIGEST in tags and PROMPTS_DIGEST not in version.tags:
                self.tag(str(version.version), {k: v for k, v in tags.items()
                                                if v and (k == PROMPTS_DIGEST or k.startswith(PROMPT_TAG_PREFIX))})
            return ModelVersionRef(name=self.model_name, version=str(version.version), run_id=training_run_id,
                                   source=version.source, created=False)
        logged = find_logged_model(self.target, training_run_id)
        version_tags = {k: v for k, v in tags.items() if v}
        if logged is None:
            source = f"{self.client.get_run(training_run_id).info.artifact_uri.rstrip('/')}/model"
            version = self.client.create_model_version(self.model_name, source=source, run_id=training_run_id,
                                                       tags=version_tags, description=description)
        else:
            source = f"models:/{logged.model_id}"
            # a sqlite/file registry store looks the logged model up through the process-wide tracking URI
            # (an MLflow TODO): point it at this store for the call; a server resolves it on its side
            with _registry_store_sees(self.target):
                version = self.client.create_model_version(self.model_name, source=source, run_id=training_run_id,
                                                           tags=version_tags, description=description,
                                                           model_id=logged.model_id)
        return ModelVersionRef(name=self.model_name, version=str(version.version), run_id=training_run_id,
                               source=source, created=True)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value[:5000])

    def identity(self, version: str) -> str:
        """What a version is: the training run that made it (a model evaluated once per data commit)."""
        registered = self.client.get_model_version(self.model_name, version)
        return f"run:{registered.run_id}" if registered.run_id else f"version:{self.model_name}/{version}"

    def hf_folder_uri(self, version: str) -> str:
        """Where a version's plain Hugging Face folder (merged weights + tokenizer) is: the training run's
        ``model`` artifacts for a version registered from a logged model (the logged model holds the MLflow
        flavour, possibly only an adapter), else the version's own source (versions registered before)."""
        registered = self.client.get_model_version(self.model_name, version)
        if registered.source.startswith("models:/") and registered.run_id:
            return f"{self.client.get_run(registered.run_id).info.artifact_uri.rstrip('/')}/model"
        # the client's own registry: a models:/ URI would go to the process-wide registry URI
        return str(self.client.get_model_version_download_uri(self.model_name, version))

    def download(self, version: str, models_dir: Path) -> Path:
        """The version's files in ``models_dir/<version>``, downloaded once; an interrupted download
        starts again. Raises ValueError when they are not a Hugging Face model folder."""
        target = models_dir / version
        if (target / COMPLETE).is_file():
            return target
        import mlflow

        models_dir.mkdir(parents=True, exist_ok=True)
        source = self.hf_folder_uri(version)
        staging = models_dir / f".{version}.partial-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging),
                                                             tracking_uri=self.target.tracking_uri))
            if not (local / "config.json").is_file():
                raise ValueError(f"{self.model_name} version {version} ({source}) is not a Hugging Face model "
                                 "folder: no config.json at its root")
            (local / COMPLETE).write_text(f"{self.model_name} {version} {source}\n")
            shutil.rmtree(target, ignore_errors=True)
            os.replace(local, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def download_adapter(self, version: str, models_dir: Path) -> AdapterFiles | None:
        """A LoRA version's adapter in ``models_dir/<version>-adapter`` (downloaded once) with the base it
        was trained over; None for a full fine-tune (or a version registered without its adapter)."""
        import mlflow

        registered = self.client.get_model_version(self.model_name, version)
        if not registered.run_id:
            return None
        params = self.client.get_run(registered.run_id).data.params
        if params.get("training.finetune", "lora") == "full" or "base_model.fingerprint" not in params:
            return None
        names = {a.path for a in self.client.list_artifacts(registered.run_id)}
        if "adapter" not in names:
            return None
        target = models_dir / f"{version}-adapter"
        if not (target / COMPLETE).is_file():
            models_dir.mkdir(parents=True, exist_ok=True)
            staging = models_dir / f".{version}-adapter.partial-{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            try:
                local = Path(mlflow.artifacts.download_artifacts(run_id=registered.run_id, artifact_path="adapter",
                                                                 dst_path=str(staging),
                                                                 tracking_uri=self.target.tracking_uri))
                if not (local / "adapter_config.json").is_file():
                    raise ValueError(f"{self.model_name} version {version}: its adapter has no adapter_config.json")
                (local / COMPLETE).write_text(f"{self.model_name} {version} adapter\n")
                shutil.rmtree(target, ignore_errors=True)
                os.replace(local, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return AdapterFiles(version=version, path=target, base_model=params["base_model"],
                            base_fingerprint=params["base_model.fingerprint"])
