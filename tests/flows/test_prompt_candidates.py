"""A changed prompt template is a new candidate that goes through the gate: the pipeline rerun on the same data
reuses the training (the weights do not depend on the evaluation prompts), registers the changed template as a
new prompt version and a new model version, and the gate decides on it; the champion is untouched until then.
Without the prompts in the version's identity the rerun found version 1, already @champion, and stopped."""

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
from sluice.core.config.sections import ProbesConfig
from tests.conftest import unique_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "lake_environment")]

TEMPLATE = "Context: {contexts}\nQuestion: {question}"
CHANGED = "Question: {question}\nUse this context: {contexts}"


def _config(published, tiny_model: Path, tmp_path: Path, template: str) -> SluiceConfig:  # type: ignore[no-untyped-def]
    lake, _ = published
    return SluiceConfig(
        lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
        training=TrainingConfig(base_model=str(tiny_model), output_dir=tmp_path / "training", finetune="full",
                                max_steps=2, batch_size=4, max_length=128),
        evaluation=EvaluationConfig(max_samples=2, max_new_tokens=2, bootstrap_resamples=100, metrics=["rougeL"],
                                    probes=ProbesConfig(enabled=False), prompt_template=template),
        registry=RegistryConfig(model_name=unique_name("prompted")),
        promotion=PromotionConfig(min_metrics={}, max_regression={}, must_beat_base_model=[]),
        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"))


@pytest.mark.timeout(600)
def test_a_changed_template_is_a_new_candidate_through_the_gate(published, tiny_model, tmp_path):
    config = _config(published, tiny_model, tmp_path, TEMPLATE)
    name = config.registry.model_name
    client = MlflowClient(f"sqlite:///{config.tracking.embedded_dir / 'mlflow.db'}")
    first = pipeline(config=config)
    assert first.promotion.version.version == "1" and first.promotion.moves
    assert client.get_model_version(name, "1").tags["sluice.prompt.template"] == f"prompts:/{name}-template/1"

    changed = config.model_copy(update={"evaluation": config.evaluation.model_copy(
        update={"prompt_template": CHANGED})})
    again = pipeline(config=changed)
    assert again.training.reused  # same data, same training settings: the weights are reused
    assert again.promotion.version.version == "2" and again.promotion.version.created
    assert again.promotion.decision is not None  # judged by the gate, not skipped as an unchanged rerun
    tags = client.get_model_version(name, "2").tags
    assert tags["sluice.prompt.template"] == f"prompts:/{name}-template/2"
    assert tags["sluice.prompt.system"] == f"prompts:/{name}-system/1"  # the unchanged system prompt: reused
    assert client.load_prompt(tags["sluice.prompt.template"]).template == CHANGED
