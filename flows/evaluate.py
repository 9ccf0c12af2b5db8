"""Evaluate a trained model against the one it would replace.

1. Pin the eval set at the training data's commit (the same lakeFS commit).
2. Evaluate the candidate (the training run's merged model).
3. Evaluate what it is compared with, now, on the same rows: the current
   @champion, or — before there is one — the untrained base model.
4. Paired bootstrap confidence intervals of candidate minus that reference,
   per metric, on the same samples.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from sluice.config import SluiceConfig
from sluice.promotion import Comparison
from tasks.evaluate import EvaluatedModel, evaluate_model, load_scores
from tasks.finetune import PublishedData, TrainingResult, describe_base_model, pin_published_data
from tasks.registry import CHAMPION, alias_version, download_model_version


class EvaluationReport(BaseModel):
    eval_data: PublishedData
    candidate: EvaluatedModel
    champion: EvaluatedModel | None  # None: no champion yet
    base_model: EvaluatedModel | None  # evaluated only when there is no champion
    comparisons: dict[str, Comparison]  # candidate minus the champion (or the base model), per metric


@flow(name="evaluate", log_prints=True)
def evaluate(training: TrainingResult, config: SluiceConfig = SluiceConfig()) -> EvaluationReport:  # noqa: B008
    """Evaluate the training's model and its reference on the eval set at the training data's commit."""
    eval_data = pin_published_data(config.lakefs.repository, training.data_commit, "eval",
                                   config.data.datasets_prefix, str(config.data.work_dir / "datasets"))
    candidate_dir = download_training_model(training, str(config.data.work_dir / "models"))
    candidate = evaluate_model("candidate", candidate_dir, f"run:{training.run_id}", eval_data, config,
                               training_run_id=training.run_id)
    champion = base = None
    champion_version = alias_version(config, CHAMPION)
    if champion_version:
        champion_dir = download_model_version(config, champion_version,
                                              str(config.data.work_dir / "models" / f"version-{champion_version}"))
        champion = evaluate_model("champion", champion_dir, _version_identity(config, champion_version), eval_data,
                                  config, version=champion_version)
        # the same model on the same commit may have been evaluated as a candidate before: same numbers, new role
        champion = champion.model_copy(update={"label": "champion", "version": champion_version})
    else:
        fingerprint = describe_base_model(config.training.base_model)
        base = evaluate_model("base model", config.training.base_model, f"base:{fingerprint}", eval_data, config)
    comparisons = compare_models(candidate, champion or base, config)
    return EvaluationReport(eval_data=eval_data, candidate=candidate, champion=champion, base_model=base,
                            comparisons=comparisons)


@task(name="download-training-model", cache_policy=NO_CACHE)
def download_training_model(training: TrainingResult, into: str) -> str:
    import mlflow

    target = Path(into) / training.run_id
    if (target / "model" / "config.json").exists():  # a run's artifacts never change
        return str(target / "model")
    return str(mlflow.artifacts.download_artifacts(run_id=training.run_id, artifact_path="model", dst_path=str(target),
                                                   tracking_uri=training.tracking_uri))


def _version_identity(config: SluiceConfig, version: str) -> str:
    """A registered version is the model its training run made: evaluated once per eval commit."""
    from mlflow import MlflowClient

    from sluice.tracking import tracking_target

    registered = MlflowClient(tracking_target(config.tracking).tracking_uri).get_model_version(
        config.registry.model_name, version)
    return f"run:{registered.run_id}" if registered.run_id else f"version:{config.registry.model_name}/{version}"


@task(name="compare-models", cache_policy=NO_CACHE)
def compare_models(candidate: EvaluatedModel, reference: EvaluatedModel, config: SluiceConfig) -> dict[str, Comparison]:
    """Paired bootstrap of candidate minus reference, per metric both have."""
    from sluice.metrics import paired_bootstrap

    if candidate.eval_commit != reference.eval_commit or candidate.samples != reference.samples:
        raise ValueError(f"cannot compare {candidate.label} and {reference.label}: evaluated on different data "
                         f"({candidate.eval_commit[:12]}/{candidate.samples} vs "
                         f"{reference.eval_commit[:12]}/{reference.samples} samples)")
    ours, theirs = load_scores(candidate), load_scores(reference)
    settings = config.evaluation
    comparisons = {}
    for metric in sorted(set(ours) & set(theirs)):
        difference = paired_bootstrap(ours[metric], theirs[metric], metric=metric,
                                      resamples=settings.bootstrap_resamples, confidence=settings.confidence,
                                      seed=settings.seed)
        comparisons[metric] = Comparison(metric=metric, mean_difference=difference.mean_difference,
                                         low=difference.low, high=difference.high)
    return comparisons
