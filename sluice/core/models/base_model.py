"""The base model a training starts from, resolved to a local folder and
identified by its contents, so that the same base gives the same training key.

``training.base_model`` takes:

- a local folder (a Hugging Face model folder: ``config.json`` and weights);
- a Hugging Face Hub id (``HuggingFaceTB/SmolLM2-135M-Instruct``), resolved
  through the Hugging Face cache; offline (``HF_HUB_OFFLINE=1``) a model that
  is not in the cache is a clear error saying how to pre-download it;
- a registered model, ``models:/<name>@<alias>`` or ``models:/<name>/<version>``,
  to continue from the champion (downloaded from the MLflow registry).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from sluice.core.errors import ExplainedError
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import TrackingTarget

FULL_HASH_LIMIT = 64 << 20  # bigger weight files are fingerprinted by size, head and tail
MODEL_CARD = "sluice-model.json"  # where a fetched model came from; not part of the model itself
REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class ModelError(ExplainedError, RuntimeError):
    """A base model that cannot be had or used as asked; the message says what to do."""


class ResolvedBaseModel(BaseModel):
    """A base model, as given and as a local folder."""

    spec: str  # training.base_model as written
    path: str  # the local folder the training process loads
    source: Literal["local", "hub", "registry"]
    fingerprint: str  # the folder's files (see base_model_fingerprint)


def base_model_fingerprint(base_model: str) -> str:
    """What identifies the base model: a local folder by its files' contents
    (large weight files by size, head and tail; the model card left out), a
    hub id by its name."""
    path = Path(base_model)
    if not path.exists():
        return f"hub:{base_model}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name != MODEL_CARD):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as handle:
            if size <= FULL_HASH_LIMIT:
                digest.update(handle.read())
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(-(1 << 20), 2)
                digest.update(handle.read())
    return f"sha256:{digest.hexdigest()}"


def looks_local(base_model: str) -> bool:
    return base_model.startswith((".", "/", "~")) or Path(base_model).exists()


def resolve_base_model(spec: str, models_dir: Path, target: TrackingTarget | None = None) -> ResolvedBaseModel:
    """The base model as a local folder; a clear error when it cannot be had."""
    registered = REGISTERED.match(spec)
    if registered:
        if target is None:
            raise ModelError(f"base model {spec!r} is a registered model, but no MLflow store was given")
        path = _registered_folder(registered, target, models_dir)
        return ResolvedBaseModel(spec=spec, path=str(path), source="registry",
                                 fingerprint=base_model_fingerprint(str(path)))
    if looks_local(spec):
        path = Path(spec).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(
                f"base model {spec!r} not found (no config.json there): fetch the offline SmolLM2 with "
                "`sluice model fetch smollm2-135m-instruct`, build the tiny test model with "
                f"`sluice model init-tiny {spec}`, or set training.base_model to a Hugging Face id")
        return ResolvedBaseModel(spec=spec, path=str(path), source="local",
                                 fingerprint=base_model_fingerprint(str(path)))
    path = Path(_hub_snapshot(spec))
    return ResolvedBaseModel(spec=spec, path=str(path), source="hub", fingerprint=base_model_fingerprint(str(path)))


def _registered_folder(match: re.Match[str], target: TrackingTarget, models_dir: Path) -> Path:
    registry = ModelRegistry(target, match["name"])
    version = match["version"] or registry.alias_version(match["alias"])
    if version is None:
        raise ModelError(f"models:/{match['name']}@{match['alias']} names no version yet (nothing was promoted "
                            f"to @{match['alias']}): train from a base model first")
    return registry.download(version, models_dir / "registry" / match["name"])


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_snapshot(repo_id: str) -> str:
    """The model's folder in the Hugging Face cache, downloaded first when the Hub can be reached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    offline = _offline()
    try:
        return snapshot_download(repo_id, local_files_only=offline)
    except HFValidationError as error:
        raise ModelError(f"base model {repo_id!r} is neither a local folder, a models:/ URI nor a Hugging Face "
                            f"id: {error}") from None
    except LocalEntryNotFoundError:
        how = ("HF_HUB_OFFLINE=1 is set" if offline else "the Hugging Face Hub could not be reached")
        raise ModelError(
            f"base model {repo_id!r} is not in the Hugging Face cache and {how}: pre-download it on a machine "
            f"that reaches the Hub (`huggingface-cli download {repo_id}`, into the same HF_HOME), or point "
            "training.base_model at a local folder") from None
