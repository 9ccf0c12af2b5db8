"""A changed prompt template is a new candidate that goes through the gate: the pipeline rerun on the same data
reuses the training (the weights do not depend on the evaluation prompts), registers the changed template as a
new prompt version and a new model version, and the gate decides on it; the champion is untouched until then.
Without the prompts in the version's identity the rerun found version 1, already @champion, and stopped.

The gate measures the prompt change: the champion is evaluated with its own linked prompts (those it serves
with), the candidate with the new ones, so a system prompt that hurts the answers fails the gate. Without that
the champion was evaluated with the candidate's prompts (the same weights: the same numbers, from the cache),
and no prompt change could ever fail. Under ``promotion.rollout: shadow`` a gated candidate goes on trial as
@challenger, shadowing the configured sample, and the ledger says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
from sluice.shell.cli.model_commands import registry_history
from tests.conftest import unique_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "lake_environment")]

TEMPLATE = "Context: {contexts}\nQuestion: {question}"
CHANGED = "Question: {question}\nUse this context: {contexts}"
SHADOWED = "Passages: {contexts}\nQuestion: {question}"
SYSTEM = EvaluationConfig().system_prompt
# the tiny model (seed 0, two training steps) answers nothing at all under this one: answers made worse
NO_ANSWERS = "Whatever you are asked, answer only with the single word: no"


def _config(published, tiny_model: Path, tmp_path: Path, template: str) -> SluiceConfig:  # type: ignore[no-untyped-def]
    lake, _ = published
    return SluiceConfig(
        lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
        training=TrainingConfig(base_model=str(tiny_model), output_dir=tmp_path / "training", finetune="full",
                                max_steps=2, batch_size=4, max_length=128),
        evaluation=EvaluationConfig(max_samples=4, max_new_tokens=4, bootstrap_resamples=100,
                                    metrics=["rougeL", "string_similarity"],
                                    probes=ProbesConfig(enabled=False), prompt_template=template),
        registry=RegistryConfig(model_name=unique_name("prompted")),
        promotion=PromotionConfig(min_metrics={}, max_regression={}, must_beat_base_model=[]),
        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"))


def _with_prompts(config: SluiceConfig, **prompts: str) -> SluiceConfig:
    return config.model_copy(update={"evaluation": config.evaluation.model_copy(update=prompts)})


def _with_promotion(config: SluiceConfig, **policy: Any) -> SluiceConfig:
    return config.model_copy(update={"promotion": PromotionConfig(
        **{"min_metrics": {}, "max_regression": {}, "must_beat_base_model": [], **policy})})


def _evaluated_with(client: MlflowClient, run_id: str) -> tuple[str, str]:
    """The system prompt and template an evaluation run generated with (its logged settings)."""
    params = client.get_run(run_id).data.params
    return params["evaluation.system_prompt"], params["evaluation.prompt_template"]


@pytest.fixture(scope="module")
def changed_template(published, tiny_model, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Version 1 (TEMPLATE) promoted, then the pipeline rerun with the CHANGED template: its result."""
    with pytest.MonkeyPatch.context() as env:
        env.delenv("SLUICE_SERVING_URL", raising=False)  # no endpoint to ask for a reload
        config = _config(published, tiny_model, tmp_path_factory.mktemp("prompted"), TEMPLATE)
        first = pipeline(config=config)
        changed = _with_prompts(config, prompt_template=CHANGED)
        yield changed, first, pipeline(config=changed)


def _client(config: SluiceConfig) -> MlflowClient:
    return MlflowClient(f"sqlite:///{config.tracking.embedded_dir / 'mlflow.db'}")


@pytest.mark.timeout(600)
def test_a_changed_template_is_a_new_candidate_through_the_gate(changed_template):
    config, first, again = changed_template
    name, client = config.registry.model_name, _client(config)
    assert first.promotion.version.version == "1" and first.promotion.moves
    assert client.get_model_version(name, "1").tags["sluice.prompt.template"] == f"prompts:/{name}-template/1"

    assert again.training.reused  # same data, same training settings: the weights are reused
    assert again.promotion.version.version == "2" and again.promotion.version.created
    assert again.promotion.decision is not None  # judged by the gate, not skipped as an unchanged rerun
    tags = client.get_model_version(name, "2").tags
    assert tags["sluice.prompt.template"] == f"prompts:/{name}-template/2"
    assert tags["sluice.prompt.system"] == f"prompts:/{name}-system/1"  # the unchanged system prompt: reused
    assert client.load_prompt(tags["sluice.prompt.template"]).template == CHANGED
    report = again.evaluation  # each side with the prompts it serves with
    assert _evaluated_with(client, report.champion.run_id) == (SYSTEM, TEMPLATE)
    assert _evaluated_with(client, report.candidate.run_id) == (SYSTEM, CHANGED)


@pytest.mark.timeout(600)
def test_a_system_prompt_that_hurts_the_answers_fails_the_gate(changed_template):
    config, _, _ = changed_template
    name, client = config.registry.model_name, _client(config)
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    hurting = _with_promotion(_with_prompts(config, system_prompt=NO_ANSWERS),
                              max_regression={"string_similarity": 0.0})  # no drop allowed
    result = pipeline(config=hurting)
    report, version = result.evaluation, result.promotion.version.version
    assert result.training.reused and result.promotion.version.created  # the same weights, a new candidate
    assert _evaluated_with(client, report.champion.run_id) == (SYSTEM, CHANGED)  # @champion as it serves
    assert _evaluated_with(client, report.candidate.run_id) == (NO_ANSWERS, CHANGED)
    print(report.champion.metrics, report.candidate.metrics)
    assert report.candidate.metrics["string_similarity"] < report.champion.metrics["string_similarity"]
    assert result.promotion.decision is not None and not result.promotion.decision.promote
    assert any("string_similarity" in r and "regression" in r for r in result.promotion.decision.reasons)
    assert client.get_model_version(name, version).tags["sluice.decision"] == "rejected"
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion  # untouched


@pytest.mark.timeout(600)
def test_under_shadow_rollout_a_gated_candidate_goes_on_trial_as_challenger(changed_template, capsys):
    config, _, _ = changed_template
    name, client = config.registry.model_name, _client(config)
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    shadowing = _with_promotion(_with_prompts(config, prompt_template=SHADOWED), rollout="shadow",
                                shadow={"sample": 0.25}, canary={"share": 0.5})
    result = pipeline(config=shadowing)  # the promote flow, with rollout shadow
    version = result.promotion.version.version
    assert result.promotion.decision is not None and result.promotion.decision.promote
    assert [tuple(m) for m in result.promotion.moves] == [("challenger", None, version)]
    tags = client.get_model_version(name, version).tags
    assert tags["sluice.decision"] == "challenger" and "sluice.canary.started" in tags
    assert tags["sluice.canary.share"] == "0.25"  # the shadow sample, not the canary share
    assert "rollout shadow" in tags["sluice.decision_reasons"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == champion  # unchanged
    assert str(client.get_model_version_by_alias(name, "challenger").version) == version

    capsys.readouterr()
    registry_history(overrides=[f"tracking.embedded_dir={config.tracking.embedded_dir}",
                                f"registry.model_name={name}"])
    history = capsys.readouterr().out
    print(history)
    assert f"version {version} on trial as @challenger in shadow: it also answers 25% of the default model's " \
           "requests in the background, never returned" in history
    assert f"@challenger    - -> {version}" in history
