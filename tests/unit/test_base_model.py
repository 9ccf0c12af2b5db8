"""training.base_model resolved to a local folder: a folder, a Hugging Face
id through the HF cache (offline: cached or a clear error), a registered
model (models:/name@alias); and the knobs of the run form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sluice.core.config import SluiceConfig, TrackingConfig, TrainingConfig, with_training_knobs
from sluice.core.models.base_model import MODEL_CARD, ModelError, base_model_fingerprint, resolve_base_model
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import ensure_experiment, tracking_target


def _model_folder(path: Path, marker: str = "a") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "marker": marker}))
    (path / "model.safetensors").write_bytes(marker.encode() * 100)
    return path


def test_a_local_folder_is_itself_and_its_card_is_not_part_of_its_fingerprint(tmp_path):
    folder = _model_folder(tmp_path / "m")
    resolved = resolve_base_model(str(folder), tmp_path / "models")
    assert (resolved.path, resolved.source) == (str(folder), "local")
    (folder / MODEL_CARD).write_text("{}")  # where the model came from does not change what it is
    assert base_model_fingerprint(str(folder)) == resolved.fingerprint
    (folder / "model.safetensors").write_bytes(b"other weights")
    assert base_model_fingerprint(str(folder)) != resolved.fingerprint


def test_a_missing_local_folder_says_how_to_get_a_model(tmp_path):
    with pytest.raises(ModelError, match="sluice model fetch smollm2-135m-instruct") as error:
        resolve_base_model(str(tmp_path / "nothing"), tmp_path / "models")
    assert "sluice model init-tiny" in str(error.value)


def _cache_hub_model(hf_home: Path, repo_id: str) -> Path:
    """A model in the Hugging Face cache layout, as `huggingface-cli download` leaves it."""
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return _model_folder(repo / "snapshots" / commit)


def test_a_hub_id_resolves_through_the_cache_offline_and_a_missing_one_says_how_to_predownload(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    snapshot = _cache_hub_model(tmp_path / "hf", "acme/chat-1b")
    resolved = resolve_base_model("acme/chat-1b", tmp_path / "models")
    assert (Path(resolved.path), resolved.source) == (snapshot, "hub")
    assert resolved.fingerprint == base_model_fingerprint(str(snapshot))

    with pytest.raises(ModelError, match="not in the Hugging Face cache and HF_HUB_OFFLINE=1 is set") as error:
        resolve_base_model("acme/not-downloaded", tmp_path / "models")
    assert "huggingface-cli download acme/not-downloaded" in str(error.value)


def test_a_registered_model_is_downloaded_from_the_registry(tmp_path):
    from mlflow import MlflowClient

    target = tracking_target(TrackingConfig(embedded_dir=tmp_path / "mlflow", experiment="base-model-test"))
    client = MlflowClient(target.tracking_uri)
    run = client.create_run(ensure_experiment(target))
    client.log_artifacts(run.info.run_id, str(_model_folder(tmp_path / "trained", "champion")), "model")
    client.set_terminated(run.info.run_id)
    registry = ModelRegistry(target, "chat")
    version = registry.register(run.info.run_id, {})
    registry.set_alias("champion", version.version)

    resolved = resolve_base_model("models:/chat@champion", tmp_path / "models", target)
    assert resolved.source == "registry"
    assert json.loads((Path(resolved.path) / "config.json").read_text())["marker"] == "champion"
    assert resolve_base_model(f"models:/chat/{version.version}", tmp_path / "models", target).path == resolved.path
    with pytest.raises(ModelError, match="names no version yet"):
        resolve_base_model("models:/chat@previous", tmp_path / "models", target)


def test_run_form_knobs_override_the_training_section_and_are_checked():
    config = SluiceConfig(training=TrainingConfig(max_steps=10))
    assert with_training_knobs(config) is config
    changed = with_training_knobs(config, base_model="acme/chat-1b", method="dpo", learning_rate=1e-5)
    assert (changed.training.base_model, changed.training.method, changed.training.learning_rate,
            changed.training.max_steps) == ("acme/chat-1b", "dpo", 1e-5, 10)
    with pytest.raises(ValueError, match="max_steps: 0 trains nothing"):
        with_training_knobs(config, max_steps=0)


@pytest.mark.parametrize("flow_path", ["flows.train:train", "flows.pipeline:pipeline"])
def test_the_run_form_puts_the_knobs_first_and_the_whole_config_last(flow_path):
    import importlib

    from prefect.utilities.callables import parameter_schema

    module, name = flow_path.split(":")
    fields = list(parameter_schema(getattr(importlib.import_module(module), name).fn).properties)
    assert fields[:5] == ["data_ref", "base_model", "method", "max_steps", "learning_rate"]
    assert fields[-1] == "config"
