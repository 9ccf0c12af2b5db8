"""Evaluate a trained model against the one it would replace.

1. Pin the eval set at the training's data commit.
2. Evaluate the candidate (the training run's merged model).
3. Evaluate what it is compared with, now, on the same rows: the current
   @champion with its own linked prompts (those it serves with; the
   candidate has the configured ones, so a changed prompt is measured), or
   — before there is one — the untrained base model.
4. Paired bootstrap confidence intervals of candidate minus that reference,
   per metric, on the same samples.
"""

from __future__ import annotations

from prefect import flow

from sluice.core.config import SluiceConfig
from sluice.core.evaluation.probes.known_pii import KnownPii
from sluice.core.evaluation.results import EvaluatedModel, EvaluationReport
from sluice.core.lake.published import PublishedData
from sluice.core.registry.client import CHAMPION
from sluice.core.registry.tracking import TrackingTarget
from sluice.core.training.results import TrainingResult
from tasks.evaluate import compare_models, evaluate_model, read_training_pii
from tasks.finetune import download_training_model, resolve_base_model
from tasks.lakefs import pin_published_data
from tasks.registry import (
    alias_version,
    download_model_version,
    evaluation_as_served,
    resolve_tracking_target,
    version_identity,
)


@flow(name="evaluate", log_prints=True)
def evaluate(training: TrainingResult, config: SluiceConfig = SluiceConfig()) -> EvaluationReport:  # noqa: B008
    """Evaluate the training's model and its reference on the eval set at the training's data commit."""
    target = resolve_tracking_target(config.tracking)
    eval_data = pin_published_data(config.lakefs.repository, training.data_commit, "eval",
                                   config.data.datasets_prefix, str(config.data.work_dir / "datasets"))
    known_pii = read_training_pii(config.lakefs.repository, eval_data.data_commit, config.data.datasets_prefix)
    candidate_dir = download_training_model(training, target, str(config.data.work_dir / "models" / "runs"))
    candidate = evaluate_model("candidate", candidate_dir, f"run:{training.run_id}", eval_data, config.evaluation,
                               target, training_run_id=training.run_id, known_pii=known_pii)
    champion_version = alias_version(target, config.registry, CHAMPION)
    champion = base = None
    if champion_version:
        champion = evaluate_champion(champion_version, eval_data, target, config, known_pii)
    else:
        resolved = resolve_base_model(config.training.base_model, str(config.data.work_dir / "models"), target)
        base = evaluate_model("base model", resolved.path, f"base:{resolved.fingerprint}", eval_data,
                              config.evaluation, target, known_pii=known_pii)
    comparisons = compare_models(candidate, champion or base, config.evaluation)
    return EvaluationReport(eval_data=eval_data, candidate=candidate, champion=champion, base_model=base,
                            comparisons=comparisons)


def evaluate_champion(version: str, eval_data: PublishedData, target: TrackingTarget,
                      config: SluiceConfig, known_pii: KnownPii | None = None) -> EvaluatedModel:
    model_dir = download_model_version(target, config.registry, version,
                                       str(config.data.work_dir / "models" / "versions"))
    settings = evaluation_as_served(target, config.registry, version, config.evaluation)  # its own prompts
    evaluated = evaluate_model("champion", model_dir, version_identity(target, config.registry, version), eval_data,
                               settings, target, version=version, known_pii=known_pii)
    # the same model and prompts on the same commit may have been evaluated as a candidate before: same numbers
    return evaluated.model_copy(update={"label": "champion", "version": version})
