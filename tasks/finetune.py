"""Fine-tuning tasks: check the base model, train (or reuse an identical
finished training), fetch the trained model. The work is in
``sluice.core.training``; the training task adds Prefect's cache, so a rerun
on the same data commit, settings and base model answers at once."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from sluice.core.config import TrainingConfig
from sluice.core.lake.published import PublishedData
from sluice.core.registry.tracking import TrackingTarget, config_hash, download_run_model
from sluice.core.training.base_model import check_base_model
from sluice.core.training.results import TrainingResult
from sluice.core.training.run import key_of, train_or_reuse
from sluice.core.training.tiny_model import ensure_tiny_model
from tasks import UNCACHED, current_flow_run


@task(name="describe-base-model", **UNCACHED)
def describe_base_model(base_model: str) -> str:
    """The base model's fingerprint; a clear error if it is not there."""
    return check_base_model(base_model)


@task(name="ensure-tiny-base-model", **UNCACHED)
def ensure_tiny_base_model(base_model: str, demo_source: str) -> str:
    """The demo's base model is the tiny one, built offline from the demo text when it is missing."""
    built = ensure_tiny_model(base_model, demo_source)
    if built:
        get_run_logger().info("built the tiny base model in %s: %d parameters", built.path, built.parameters)
    return base_model


def _training_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect's cache key for a training: the training key, per MLflow store (a cached result names a run
    in one store)."""
    store = config_hash(parameters["target"].tracking_uri)[:8]
    return f"train-{key_of(parameters['training'], parameters['data'], parameters['base_fingerprint'])}-{store}"


@task(name="train-model", cache_key_fn=_training_cache_key, persist_result=True)
def train_model(training: TrainingConfig, target: TrackingTarget, data: PublishedData,
                base_fingerprint: str) -> TrainingResult:
    """Train in a process of its own (or reuse an identical finished training); tracked in MLflow."""
    return train_or_reuse(training, target, data, base_fingerprint, current_flow_run(), get_run_logger())


@task(name="download-training-model", **UNCACHED)
def download_training_model(training: TrainingResult, target: TrackingTarget, into: str) -> str:
    """The training run's merged model in a local folder."""
    return download_run_model(target, training.run_id, into)
