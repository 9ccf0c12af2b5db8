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
from sluice.core.evaluation.probes import known_pii as probes_known_pii
from sluice.core.evaluation.probes.known_pii import KnownPii
from sluice.core.evaluation.results import EvaluatedModel
from sluice.core.lake.published import PublishedData
from sluice.core.registry.tracking import TrackingTarget, config_hash
from tasks import UNCACHED, current_flow_run
from tasks.lakefs import IDEMPOTENT


def _evaluation_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    return "evaluate-" + config_hash(parameters["model_identity"], parameters["data"].data_commit,
                                     parameters["settings"], parameters["target"].tracking_uri)[:32]


@task(name="evaluate-model", cache_key_fn=_evaluation_cache_key, persist_result=True)
def evaluate_model(label: str, model_dir: str, model_identity: str, data: PublishedData, settings: EvaluationConfig,
                   target: TrackingTarget, version: str | None = None,
                   training_run_id: str | None = None, known_pii: KnownPii | None = None) -> EvaluatedModel:
    """Generate, score, and log one model's evaluation (eval set and probes) as its own MLflow run."""
    return run.evaluate_model(label, model_dir, model_identity, data, settings, target, current_flow_run(),
                              version=version, training_run_id=training_run_id, known_pii=known_pii,
                              logger=get_run_logger())


compare_models = task(compare.compare_models, name="compare-models", **UNCACHED)
# the PII digests cleaning kept at the data commit (the known_pii of evaluate_model; a commit never changes)
read_training_pii = task(probes_known_pii.training_pii_digests, name="read-training-pii", **IDEMPOTENT)
