"""A training's candidate as an MLflow 3 logged model (transformers flavour, ``llm/v1/chat``), so that
``mlflow.pyfunc.load_model("models:/<name>@champion")``, ``mlflow models serve`` and the MLflow UI's
"Logged models" see what the gate promoted.

- LoRA (and QLoRA): the adapter only, with a reference to its base (``base_model_path``, MLflow ≥ 3.x). The
  flavour records the base's local folder and, at load, reads the base from there and applies the adapter
  with ``PeftModel.from_pretrained``: the same weights as the trained model (the test compares greedy
  output). Logging a PEFT model *without* ``base_model_path`` is the stack notes' pitfall: the flavour
  cannot name a local base and reloads with re-initialised base weights, silently. The base folder must
  still exist where it was when the model is loaded (``mlflow.transformers.load_model(..., base_model_path=)``
  points it elsewhere).
- Full fine-tune: the merged weights.

The built-in server does not load this: it downloads the run's plain Hugging Face folders (``model/``, the
merged weights, and ``adapter/``), as fast as before (``ModelRegistry.download`` / ``download_adapter``).

MLflow's fluent ``log_model`` writes to the process-wide tracking URI; this goes through a client on the
target's URI instead (create the logged model, save the flavour locally, upload, finalize), as
``mlflow.models.Model.log`` does.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

from sluice.core.registry.tracking import TrackingTarget, mlflow_client

LOGGED_MODEL_NAME = "candidate"
CHAT_TASK = "llm/v1/chat"  # the OpenAI chat shape for pyfunc predict and `mlflow models serve`
# what a model server needs to load it; pinned to what trained it (no "+cpu" local labels: pip cannot find them)
_RUNTIME = ("mlflow", "transformers", "torch", "accelerate", "safetensors", "tokenizers")


def _requirements(lora: bool) -> list[str]:
    """Pinned explicitly: the flavour's own guess adds torchvision, which is not installed here (and fails)."""
    packages = _RUNTIME + (("peft",) if lora else ())
    return [f"{name}=={installed_version(name).split('+')[0]}" for name in packages]


def find_logged_model(target: TrackingTarget, run_id: str) -> Any | None:
    """The READY logged model a training run produced; None for runs logged before there were any."""
    client = mlflow_client(target.tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    found = client.search_logged_models([experiment_id], filter_string=(
        f"source_run_id = '{run_id}' AND name = '{LOGGED_MODEL_NAME}'"))
    # not `status = 'READY'` in the filter: the sqlite store keeps the status as a number and matches nothing
    ready = [model for model in found if str(getattr(model.status, "value", model.status)) == "READY"]
    return max(ready, key=lambda model: model.creation_timestamp) if ready else None


def lora_base_folder(adapter_dir: Path) -> Path:
    """The base the adapter was trained over: the folder the training read (``base_model_name_or_path``)."""
    config = adapter_dir / "adapter_config.json"
    base = Path(json.loads(config.read_text())["base_model_name_or_path"]).resolve()
    if not (base / "config.json").is_file():
        raise ValueError(f"{config}: base_model_name_or_path {base} is not a Hugging Face model folder (no "
                         "config.json): the logged model could not reference its base")
    return base


def _chat_components(merged_dir: Path, adapter_dir: Path | None) -> tuple[dict[str, Any], Path | None]:
    """What the flavour saves, and the base folder it references (LoRA) or None (full weights)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if adapter_dir is None:
        model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
        return {"model": model, "tokenizer": AutoTokenizer.from_pretrained(merged_dir)}, None
    from peft import PeftModel

    base = lora_base_folder(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), adapter_dir)
    return {"model": model, "tokenizer": AutoTokenizer.from_pretrained(adapter_dir)}, base


def log_candidate_model(target: TrackingTarget, run_id: str, merged_dir: Path, adapter_dir: Path | None) -> str:
    """Log the training run's model (the adapter over its base, or the merged weights) as a logged model
    linked to the run; its id. Once per run: a rerun returns the one logged before."""
    existing = find_logged_model(target, run_id)
    if existing is not None:
        return str(existing.model_id)
    import mlflow
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model

    client = mlflow_client(target.tracking_uri)
    run = client.get_run(run_id)
    components, base = _chat_components(merged_dir, adapter_dir)
    logged = client.create_logged_model(run.info.experiment_id, name=LOGGED_MODEL_NAME, source_run_id=run_id,
                                        params=dict(run.data.params), model_type="llm",
                                        tags={"sluice.weights": "adapter+base" if base else "merged"})
    try:
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        description = Model(artifact_path=logged.artifact_location, model_uuid=logged.model_id, run_id=run_id,
                            model_id=logged.model_id)
        with tempfile.TemporaryDirectory(prefix="sluice-logged-model-") as scratch:
            local = Path(scratch) / "model"
            # do_sample False: greedy unless the request samples, like the built-in server at temperature 0
            mlflow.transformers.save_model(components, path=str(local), task=CHAT_TASK, mlflow_model=description,
                                           model_config={"do_sample": False},
                                           base_model_path=str(base) if base else None,
                                           pip_requirements=_requirements(lora=base is not None))
            client.log_model_artifacts(logged.model_id, str(local))
    except BaseException:
        client.finalize_logged_model(logged.model_id, "FAILED")  # a rerun logs a new one, never this one
        raise
    client.finalize_logged_model(logged.model_id, "READY")
    return str(logged.model_id)
