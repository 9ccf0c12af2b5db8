"""Evaluation tasks: evaluate one model on the eval set of a data commit, and
compare two evaluations. The work is in ``sluice.core.evaluation``; the
evaluation task adds Prefect's cache, keyed by (model identity, data commit,
evaluation settings, MLflow store), so a rerun on an unchanged commit answers
at once."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task

from sluice.core.config import EvaluationConfig
from sluice.core.evaluation import compare, run
from sluice.core.evaluation.results import EvaluatedModel
from sluice.core.lake.published import PublishedData
from sluice.core.registry.tracking import TrackingTarget, config_hash
from tasks import UNCACHED, current_flow_run


def _evaluation_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return "evaluate-" + config_hash(parameters["model_identity"], parameters["data"].data_commit,
                                     parameters["settings"], parameters["target"].tracking_uri)[:32]


@task(name="evaluate-model", cache_key_fn=_evaluation_cache_key, persist_result=True)
def evaluate_model(label: str, model_dir: str, model_identity: str, data: PublishedData, settings: EvaluationConfig,
                   target: TrackingTarget, version: str | None = None,
                   training_run_id: str | None = None) -> EvaluatedModel:
    """Generate, score, and log one model's evaluation as its own MLflow run."""
    return run.evaluate_model(label, model_dir, model_identity, data, settings, target, current_flow_run(),
                              version=version, training_run_id=training_run_id, logger=get_run_logger())


compare_models = task(compare.compare_models, name="compare-models", **UNCACHED)
