"""An unchanged rerun of the pipeline leaves a version's recorded evidence as it was: the champion is not
compared with itself, and its `sluice.decision*` tags and the ledger keep what it was promoted on (a rerun
used to rewrite them with "promote version 1 against champion version 1")."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from flows.pipeline import pipeline
from sluice.core.config import (
    DataConfig,
    EvaluationConfig,
    PromotionConfig,
    RegistryConfig,
    SluiceConfig,
    TrackingConfig,
    TrainingConfig,
)
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.ledger import read_ledger
from sluice.core.registry.tracking import tracking_target
from tests.conftest import latest_artifact, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "lake_environment")]


def _config(published, tiny_model: Path, tmp_path: Path) -> SluiceConfig:  # type: ignore[no-untyped-def]
    """A short training and a gate every candidate passes: what is tested is what a rerun records."""
    lake, _ = published
    return SluiceConfig(
        lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
        training=TrainingConfig(base_model=str(tiny_model), output_dir=tmp_path / "training", finetune="full",
                                max_steps=2, batch_size=4, max_length=128),
        evaluation=EvaluationConfig(max_samples=8, max_new_tokens=8, bootstrap_resamples=100,
                                    metrics=["rougeL"]),
        registry=RegistryConfig(model_name=unique_name("model")),
        promotion=PromotionConfig(min_metrics={}, max_regression={}, must_beat_base_model=[]),
        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"))


@pytest.mark.timeout(600)
def test_an_unchanged_rerun_keeps_the_champions_evidence(published, tiny_model, tmp_path):
    config = _config(published, tiny_model, tmp_path)
    name = config.registry.model_name
    client = MlflowClient(f"sqlite:///{config.tracking.embedded_dir / 'mlflow.db'}")
    first = pipeline(config=config)
    assert first.promotion.moves and first.promotion.decision is not None
    assert first.promotion.decision.baseline == "base_model"
    recorded = client.get_model_version(name, "1").tags

    again = pipeline(config=config)
    assert again.training.reused and again.promotion.version.version == "1"
    assert client.get_model_version(name, "1").tags == recorded  # the evidence against the base model stays
    assert "champion version 1" not in recorded["sluice.decision_reasons"]
    assert again.promotion.decision is None and again.promotion.moves == []  # not compared with itself
    assert "version 1 is already @champion" in again.promotion.summary()
    assert len(read_ledger(ModelRegistry(tracking_target(config.tracking), name))) == 1
    assert "already @champion" in latest_artifact("promotion")
