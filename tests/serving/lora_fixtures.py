"""Tiny LoRA adapters over the serving tests' tiny base, and registry versions logged the way
training logs a LoRA run: the merged model under ``model/``, the adapter under ``adapter/``,
the base reference and its fingerprint as run parameters."""

from __future__ import annotations

from pathlib import Path

from tests.serving.conftest import Registry


def build_adapter(base_dir: Path, out_dir: Path, seed: int, targets: tuple[str, ...] = ("q_proj", "v_proj"),
                  merged: bool = True) -> Path:
    """A PEFT adapter with random (not zero) weights in ``out_dir/adapter`` and its merged model in
    ``out_dir/merged``: each seed answers differently from the base and from the others."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                  init_lora_weights=False, task_type="CAUSAL_LM"))
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    peft_model.save_pretrained(out_dir / "adapter")
    tokenizer.save_pretrained(out_dir / "adapter")
    if merged:
        peft_model.merge_and_unload().save_pretrained(out_dir / "merged")
        tokenizer.save_pretrained(out_dir / "merged")
    return out_dir


def log_lora_version(registry: Registry, name: str, base_dir: Path, adapter_dir: Path,
                     base_model: str | None = None) -> str:
    """Register a LoRA version of ``name`` (created if needed) as training would; its version number."""
    from mlflow.exceptions import MlflowException

    from sluice.core.config import TrackingConfig
    from sluice.core.models.base_model import base_model_fingerprint
    from sluice.core.registry.tracking import ensure_experiment, tracking_target

    client = registry.client()
    experiment = ensure_experiment(tracking_target(TrackingConfig(embedded_dir=registry.store_dir)), "serving-tests")
    run = client.create_run(experiment)
    run_id = run.info.run_id
    for key, value in {"training.finetune": "lora", "base_model": base_model or str(base_dir),
                       "base_model.fingerprint": base_model_fingerprint(str(base_dir))}.items():
        client.log_param(run_id, key, value)
    if (adapter_dir / "merged").is_dir():  # else a version whose merged model is never downloaded
        client.log_artifacts(run_id, str(adapter_dir / "merged"), "model")
    client.log_artifacts(run_id, str(adapter_dir / "adapter"), "adapter")
    client.set_terminated(run_id)
    try:
        client.create_registered_model(name)
    except MlflowException:
        pass  # registered by an earlier version
    return str(client.create_model_version(name, source=f"{run.info.artifact_uri}/model", run_id=run_id).version)


def set_alias(registry: Registry, name: str, alias: str, version: str) -> None:
    registry.client().set_registered_model_alias(name, alias, version)
