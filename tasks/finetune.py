"""Fine-tuning tasks: check the base model, train (or reuse an identical
finished training), fetch the trained model. The work is in
``sluice.core.training``; the training task adds Prefect's cache, so a rerun
on the same data commit, settings and base model answers at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import get_run_logger, task

from sluice.core.config import TrainingConfig
from sluice.core.lake.published import PublishedData
from sluice.core.models import base_model as base_model_resolution
from sluice.core.models import catalog
from sluice.core.models.base_model import ResolvedBaseModel
from sluice.core.registry.tracking import TrackingTarget, config_hash, download_run_model
from sluice.core.training.preflight import check_assistant_only_loss
from sluice.core.training.results import TrainingResult
from sluice.core.training.run import key_of, train_or_reuse
from tasks import UNCACHED, current_flow_run


@task(name="resolve-base-model", **UNCACHED)
def resolve_base_model(base_model: str, models_dir: str, target: TrackingTarget) -> ResolvedBaseModel:
    """The base model as a local folder (a folder, a Hub id through the HF cache, or models:/name@alias)."""
    resolved = base_model_resolution.resolve_base_model(base_model, Path(models_dir), target)
    get_run_logger().info("base model %s: %s (%s, %s)", base_model, resolved.path, resolved.source,
                          resolved.fingerprint[:19])
    return resolved


@task(name="ensure-base-model", **UNCACHED)
def ensure_base_model(base_model: str, demo_source: str) -> str:
    """The demo's base model, made offline when missing: fetched from the catalog (SmolLM2), or the tiny test
    model built from the demo text."""
    made = catalog.ensure_base_model(base_model, demo_source)
    if made:
        get_run_logger().info(made)
    return base_model


@task(name="check-chat-template", **UNCACHED)
def check_chat_template(training: TrainingConfig, base: ResolvedBaseModel, data: PublishedData) -> None:
    """Assistant-only loss on this base model's chat template: refused now, with the reason, rather than by the
    trainer minutes later."""
    checked = check_assistant_only_loss(training, base.path, data)
    if checked:
        get_run_logger().info("assistant-only loss: the chat template marks the assistant's tokens in %d sample "
                              "conversation(s)", checked)


def _training_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect's cache key for a training: the training key, per MLflow store (a cached result names a run
    in one store)."""
    store = config_hash(parameters["target"].tracking_uri)[:8]
    return f"train-{key_of(parameters['training'], parameters['data'], parameters['base'])}-{store}"


@task(name="train-model", cache_key_fn=_training_cache_key, persist_result=True)
def train_model(training: TrainingConfig, target: TrackingTarget, data: PublishedData,
                base: ResolvedBaseModel) -> TrainingResult:
    """Train in a process of its own (or reuse an identical finished training); tracked in MLflow."""
    return train_or_reuse(training, target, data, base, current_flow_run(), get_run_logger())


@task(name="download-training-model", **UNCACHED)
def download_training_model(training: TrainingResult, target: TrackingTarget, into: str) -> str:
    """The training run's merged model in a local folder."""
    return download_run_model(target, training.run_id, into)
