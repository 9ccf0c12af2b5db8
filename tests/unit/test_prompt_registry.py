"""Prompts versioned with the model, on a real MLflow store (sqlite in tmp_path): each prompt text is registered
once in MLflow's prompt registry, a model version names (and its logged model links) the prompts it goes with,
the same weights with changed prompts become a new model version (a new candidate for the gate), and
`sluice registry history` says which prompts each version served with."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.core.config import EvaluationConfig, TrackingConfig, TrainingConfig
from sluice.core.lineage import FlowRun
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.ledger import record_move
from sluice.core.registry.logged_model import LOGGED_MODEL_NAME
from sluice.core.registry.prompts import (
    link_prompts,
    linked_system_prompt,
    prompt_set,
    register_prompts,
    version_prompt_uris,
    with_system_prompt,
)
from sluice.core.registry.tracking import ensure_experiment, tracking_target

MODEL = "prompted"


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tracking_target(TrackingConfig(embedded_dir=tmp_path / "mlflow")), MODEL)


def _training_run(registry: ModelRegistry, *, logged_model: bool = False) -> str:
    """A finished run with a `model` artifact folder (and, if asked, a READY logged model, as training logs)."""
    experiment_id = ensure_experiment(registry.target)
    run_id = registry.client.create_run(experiment_id).info.run_id
    registry.client.log_text(run_id, "{}", "model/config.json")
    if logged_model:
        from mlflow.entities import LoggedModelStatus

        model = registry.client.create_logged_model(experiment_id, name=LOGGED_MODEL_NAME, source_run_id=run_id)
        registry.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
    registry.client.set_terminated(run_id)
    return run_id


def _prompts(system: str | None = "Answer from the context.", template: str = "Q: {question} C: {contexts}"):
    return prompt_set(TrainingConfig(), EvaluationConfig(system_prompt=system, prompt_template=template))


def test_a_prompt_text_is_registered_once_and_a_changed_one_gets_a_new_prompt_version(registry):
    first = register_prompts(registry, _prompts())
    assert first.uris == {"system": f"prompts:/{MODEL}-system/1", "template": f"prompts:/{MODEL}-template/1"}
    assert register_prompts(registry, _prompts()) == first  # unchanged: no new prompt version
    changed = register_prompts(registry, _prompts(template="Question: {question}"))
    assert changed.uris == {"system": f"prompts:/{MODEL}-system/1", "template": f"prompts:/{MODEL}-template/2"}
    assert changed.digest != first.digest
    assert registry.client.load_prompt(changed.uris["template"]).template == "Question: {question}"
    back = register_prompts(registry, _prompts())  # the first text again: its prompt version, not a third
    assert back == first
    assert register_prompts(registry, _prompts(system=None)).uris.keys() == {"template"}  # no system turn


def test_changed_prompts_on_the_same_weights_are_a_new_model_version(registry):
    run_id = _training_run(registry)
    refs = register_prompts(registry, _prompts())
    first = registry.register(run_id, refs.version_tags())
    assert first.created and first.version == "1"
    rerun = registry.register(run_id, refs.version_tags())
    assert not rerun.created and rerun.version == "1"  # unchanged prompts: the rerun finds the version
    changed = register_prompts(registry, _prompts(template="Question: {question}"))
    candidate = registry.register(run_id, changed.version_tags())
    assert candidate.created and candidate.version == "2"  # a new candidate, for the gate to judge


def test_a_version_names_its_prompts_and_its_logged_model_links_them(registry):
    run_id = _training_run(registry, logged_model=True)
    refs = register_prompts(registry, _prompts())
    version = registry.register(run_id, refs.version_tags())
    link_prompts(registry, version.version, refs)
    assert version_prompt_uris(registry, version.version) == refs.uris
    assert linked_system_prompt(registry, version.version) == "Answer from the context."
    model_id = registry.client.get_model_version(MODEL, version.version).source.removeprefix("models:/")
    linked = registry.client.get_logged_model(model_id).tags["mlflow.linkedPrompts"]
    assert f"{MODEL}-system" in linked and f"{MODEL}-template" in linked  # MLflow's own link


def test_a_version_without_linked_prompts_has_no_system_prompt(registry):
    version = registry.register(_training_run(registry), {})
    assert version_prompt_uris(registry, version.version) == {}
    assert linked_system_prompt(registry, version.version) is None


def test_the_system_prompt_joins_only_a_chat_without_a_system_turn():
    user = [{"role": "user", "content": "hi"}]
    assert with_system_prompt(user, "Be brief.") == [{"role": "system", "content": "Be brief."}, *user]
    own = [{"role": "system", "content": "Mine."}, *user]
    assert with_system_prompt(own, "Be brief.") == own
    assert with_system_prompt(user, None) == user


def test_registry_history_shows_the_prompts_each_version_served_with(registry, tmp_path, capsys):
    from sluice.shell.cli.model_commands import registry_history

    run_id = _training_run(registry)
    for template in ("Q: {question} C: {contexts}", "Question: {question}"):
        refs = register_prompts(registry, _prompts(template=template))
        version = registry.register(run_id, refs.version_tags())
        link_prompts(registry, version.version, refs)
        record_move(registry, "champion", None if version.version == "1" else "1", version.version, "promote",
                    {}, FlowRun())
    registry_history(overrides=[f"tracking.embedded_dir={tmp_path / 'mlflow'}", f"registry.model_name={MODEL}"])
    lines = capsys.readouterr().out.splitlines()
    prompt_lines = [line.strip() for line in lines if line.strip().startswith("prompts:")]
    assert prompt_lines == [
        f"prompts: system prompts:/{MODEL}-system/1, template prompts:/{MODEL}-template/1",
        f"prompts: system prompts:/{MODEL}-system/1, template prompts:/{MODEL}-template/2"]
