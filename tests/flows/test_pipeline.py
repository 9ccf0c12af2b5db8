"""The pipeline end to end on the tiny model: train → evaluate (ROUGE, RAGAS
metrics, MiniLM similarity) → register → gate → promote, against the
embedded lakeFS and a real MLflow store (registry, aliases, ledger), under a
real Prefect API. One scenario walks the life of a model name: a first
champion that beats the untrained base model, a cached rerun, a rejected
undertrained candidate, a second champion, a rollback."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mlflow import MlflowClient
from prefect import flow

from flows.pipeline import pipeline
from flows.promote import rollback
from sluice.core.config import (
    DataConfig,
    EvaluationConfig,
    PromotionConfig,
    RegistryConfig,
    SluiceConfig,
    TrackingConfig,
    TrainingConfig,
)
from sluice.core.promotion.aliases import RollbackError
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.ledger import LedgerEntry, read_ledger, served_at
from sluice.core.registry.tracking import tracking_target
from tasks.registry import register_model_version
from tests.conftest import latest_artifact, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "lake_environment")]

TRAINED = {"finetune": "full", "learning_rate": 3e-3, "max_steps": 60, "batch_size": 8, "max_length": 256,
           "logging_steps": 20, "save_steps": 100}


def _config(published, tiny_model: Path, tmp_path: Path, model_name: str, promotion: PromotionConfig | None = None,
            **training: object) -> SluiceConfig:  # type: ignore[no-untyped-def]
    lake, _ = published
    return SluiceConfig(
        lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
        training=TrainingConfig(base_model=str(tiny_model), output_dir=tmp_path / "training",
                                **{**TRAINED, **training}),
        evaluation=EvaluationConfig(max_samples=40, max_new_tokens=32, bootstrap_resamples=500),
        registry=RegistryConfig(model_name=model_name),
        promotion=promotion or PromotionConfig(min_metrics={"rougeL": 0.25},
                                               max_regression={"rougeL": 0.05}),
        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"))


def _client(config: SluiceConfig) -> MlflowClient:
    return MlflowClient(f"sqlite:///{config.tracking.embedded_dir / 'mlflow.db'}")


def ledger(config: SluiceConfig) -> list[LedgerEntry]:
    return read_ledger(ModelRegistry(tracking_target(config.tracking), config.registry.model_name))


def _mlflow_run_ids(client: MlflowClient) -> set[str]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {run.info.run_id for run in client.search_runs(experiments, max_results=5000)}


def _champion(config: SluiceConfig) -> str:
    return str(_client(config).get_model_version_by_alias(config.registry.model_name, "champion").version)


@pytest.mark.timeout(900)
def test_a_model_name_from_first_champion_to_rollback(published, tiny_model, tmp_path):
    lake, main_commit = published
    name = unique_name("model")
    config = _config(published, tiny_model, tmp_path, name)
    client = _client(config)

    # 1. the first candidate: no champion yet, so it must beat the untrained base model
    first = pipeline(config=config)
    evaluation, promotion = first.evaluation, first.promotion
    assert first.data_commit == main_commit
    assert evaluation.eval_data.data_commit == main_commit  # eval set at the training data's commit
    assert evaluation.champion is None and evaluation.base_model is not None
    assert evaluation.candidate.metrics["rougeL"] > evaluation.base_model.metrics["rougeL"] + 0.2
    assert evaluation.comparisons["rougeL"].low > 0
    assert promotion.decision.outcome == "promote" and promotion.decision.baseline == "base_model"
    assert promotion.version.created and promotion.version.version == "1"
    assert _champion(config) == "1"
    version = client.get_model_version(name, "1")
    assert version.run_id == first.training.run_id
    assert version.tags["lakefs.commit"] == main_commit and version.tags["lakefs.repository"] == lake.repository
    assert version.tags["sluice.training_run"] == first.training.run_id
    assert version.tags["sluice.evaluation_run"] == evaluation.candidate.run_id
    assert version.tags["sluice.decision"] == "promoted" and version.tags["prefect.flow_run_id"]
    assert len(version.tags["mlflow.source.git.commit"]) == 40 and version.tags["sluice.config_hash"]
    eval_run = client.get_run(evaluation.candidate.run_id)
    assert eval_run.data.tags["lakefs.commit"] == main_commit
    assert {"rouge1", "rouge2", "rougeL", "bleu", "string_similarity", "exact_match",
            "semantic_similarity", "generation_tokens_per_second"} <= set(eval_run.data.metrics)
    samples = json.loads(Path(client.download_artifacts(eval_run.info.run_id, "eval/samples.json",
                                                        str(tmp_path))).read_text())
    assert len(samples["data"]) == 40
    assert {"question", "prediction", "reference", "rougeL"} <= set(samples["columns"])
    report = latest_artifact("promotion")
    assert "PROMOTED" in report and "base model (no champion yet)" in report and "rougeL" in report
    (entry,) = ledger(config)
    assert (entry.alias, entry.from_version, entry.to_version, entry.action) == ("champion", None, "1", "promote")
    promoted_at = entry.at

    # 2. the same commit and config again: every stage reused, nothing moves, no second version
    runs_before = _mlflow_run_ids(client)
    again = pipeline(config=config)
    assert again.training.reused and again.training.run_id == first.training.run_id  # nothing trained
    # the evaluations come from the cache: the candidate's and the champion's (the same model) are the first run's
    assert again.evaluation.candidate.run_id == evaluation.candidate.run_id
    assert again.evaluation.champion is not None and again.evaluation.champion.run_id == evaluation.candidate.run_id
    assert _mlflow_run_ids(client) == runs_before  # no training, evaluation or ledger run was started
    assert not again.promotion.version.created
    assert again.promotion.version.version == "1" and again.promotion.moves == []
    assert len(client.search_model_versions(f"name = '{name}'")) == 1 and len(ledger(config)) == 1

    # 3. an undertrained candidate is rejected: measured against the champion now, champion untouched
    weak = pipeline(config=_config(published, tiny_model, tmp_path, name, max_steps=3))
    assert weak.evaluation.champion is not None and weak.evaluation.champion.version == "1"
    assert weak.promotion.decision.outcome == "reject" and weak.promotion.moves == []
    rejected = client.get_model_version(name, weak.promotion.version.version)
    assert rejected.tags["sluice.decision"] == "rejected"
    assert "rougeL" in rejected.tags["sluice.decision_reasons"]
    assert _champion(config) == "1" and len(ledger(config)) == 1
    assert "REJECTED" in latest_artifact("promotion")

    # 4. a second good candidate replaces the champion; the first becomes @previous
    second = pipeline(config=_config(published, tiny_model, tmp_path, name, seed=7))
    assert second.promotion.decision.outcome == "promote", second.promotion.decision.reasons
    new_version = second.promotion.version.version
    assert _champion(config) == new_version
    assert str(client.get_model_version_by_alias(name, "previous").version) == "1"

    # 5. rollback: @champion back to version 1, recorded; a second rollback has nothing to go back to
    moves = rollback(reason="bad answers in production", config=config)
    assert ("champion", new_version, "1") in [tuple(m) for m in moves]
    assert _champion(config) == "1"
    with pytest.raises(RollbackError):
        rollback(config=config)
    entries = ledger(config)
    assert entries[-1].action == "rollback"
    assert served_at(entries, promoted_at) == "1"
    assert served_at(entries, datetime.now(UTC)) == "1"
    promoted_second = next(e for e in entries if e.alias == "champion" and e.to_version == new_version)
    assert served_at(entries, promoted_second.at) == new_version
    assert served_at(entries, datetime(2000, 1, 1, tzinfo=UTC)) is None
    assert not Path("mlflow.db").exists()  # nothing fell back to MLflow's default store in the working directory


@flow
def register_only(config: SluiceConfig, run_id: str, data_commit: str) -> None:
    register_model_version(tracking_target(config.tracking), config.registry, run_id, {"lakefs.commit": data_commit},
                           data_commit)


def test_an_interrupted_promotion_is_repaired_and_a_dry_run_moves_nothing(published, tiny_model, tmp_path):
    name = unique_name("model")
    config = _config(published, tiny_model, tmp_path, name)
    done = pipeline(config=_config(published, tiny_model, tmp_path, unique_name("other")))  # trains once
    # the interrupted run got as far as registering the version, then died before moving any alias
    register_only(config, done.training.run_id, done.data_commit)
    client = _client(config)
    assert len(client.search_model_versions(f"name = '{name}'")) == 1

    repaired = pipeline(config=config)
    assert not repaired.promotion.version.created and repaired.promotion.version.version == "1"
    assert repaired.promotion.decision.outcome == "promote"
    assert len(client.search_model_versions(f"name = '{name}'")) == 1
    assert _champion(config) == "1"

    # dry-run: the same decision and report, no alias moved
    dry_name = unique_name("model")
    dry = _config(published, tiny_model, tmp_path, dry_name,
                  promotion=PromotionConfig(mode="dry-run", min_metrics={"rougeL": 0.25}))
    result = pipeline(config=dry)
    assert result.training.reused
    assert result.promotion.decision.outcome == "promote" and not result.promotion.decision.promote
    assert result.promotion.moves == [] and ledger(dry) == []
    assert client.get_model_version(dry_name, "1").tags["sluice.decision"] == "dry-run-promote"
    assert "dry-run" in latest_artifact("promotion")
