"""Registered versions are MLflow logged models: what training records (``record_training_artifacts``) and
the registry registers (``ModelRegistry.register``) loads with ``mlflow.pyfunc`` and answers a chat request
with the trained weights (LoRA: the adapter over its base, reloaded, not re-initialised), carries its eval
metrics for the MLflow UI, still downloads as a plain Hugging Face folder for ``sluice serve``, and answers
what ``sluice serve`` answers. Real parts: tiny models, a sqlite MLflow store, a real server on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import yaml

from sluice.core.config import (
    EvaluationConfig,
    RegistryConfig,
    ServingConfig,
    SluiceConfig,
    TrackingConfig,
    TrainingConfig,
)
from sluice.core.lake.published import PublishedData
from sluice.core.lineage import REPOSITORY, TRAINING_RUN, FlowRun
from sluice.core.models.base_model import ResolvedBaseModel, base_model_fingerprint
from sluice.core.registry.client import CHAMPION, ModelRegistry
from sluice.core.registry.logged_model import find_logged_model, log_candidate_model
from sluice.core.registry.tracking import TrackingTarget, ensure_experiment, mlflow_client, tracking_target
from sluice.core.training.mlflow_run import open_training_run, record_training_artifacts
from tests.serving.conftest import build_model

CHAT = [{"role": "user", "content": "When does the sluice at Elmbridge close?"}]
MAX_TOKENS = 10
API_KEY = "logged-model-test-key"


@dataclass
class Trained:
    """One training run recorded the way the pipeline records it, registered as @champion of ``name``."""

    name: str
    run_id: str
    version: str
    merged_dir: Path  # what the trained model is (the worker verified it reproduces the in-memory model)
    base_dir: Path


def _lora_training(base: Path, out: Path) -> dict[str, str]:
    """What the training worker leaves for a LoRA run: the adapter (trained: non-zero B) and the merged model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(3)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    model.merge_and_unload().save_pretrained(out / "merged")
    tokenizer.save_pretrained(out / "merged")
    return {"adapter_dir": str(out / "adapter"), "merged_dir": str(out / "merged")}


def _record(target: TrackingTarget, name: str, base: Path, out: Path, result: dict[str, str],
            finetune: str) -> Trained:
    """open_training_run → record_training_artifacts → register → @champion, as the pipeline does."""
    training = TrainingConfig(base_model=str(base), finetune=finetune, output_dir=out)
    data = PublishedData(repository="demo", data_commit="c0ffee" * 6, kind="sft", prefix="datasets/sft/clean/",
                         paths=["datasets/sft/clean/part-0.parquet"], local_files=[], rows=10)
    resolved = ResolvedBaseModel(spec=str(base), path=str(base), source="local",
                                 fingerprint=base_model_fingerprint(str(base)))
    run_id = open_training_run(target, ensure_experiment(target), f"key-{name}", training, data, resolved,
                               FlowRun())
    (out / "training.log").write_text("trained\n")
    record_training_artifacts(target, run_id, out, {**result, "global_step": 1, "train_loss": 1.0}, training,
                              data)
    mlflow_client(target.tracking_uri).set_terminated(run_id)
    registry = ModelRegistry(target, name)
    version = registry.register(run_id, {TRAINING_RUN: run_id}).version
    registry.set_alias(CHAMPION, version)
    return Trained(name, run_id, version, Path(result["merged_dir"]), base)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrackingTarget:
    return tracking_target(TrackingConfig(embedded_dir=tmp_path_factory.mktemp("logged-models-mlflow")))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("logged-models-base") / "base", seed=1)


@pytest.fixture(scope="module")
def lora(store: TrackingTarget, base: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    out = tmp_path_factory.mktemp("lora-run")
    return _record(store, "lora-model", base, out, _lora_training(base, out), "lora")


@pytest.fixture(scope="module")
def full(store: TrackingTarget, base: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    out = tmp_path_factory.mktemp("full-run")
    merged = build_model(out / "merged", seed=2)  # a full fine-tune leaves only merged weights
    return _record(store, "full-model", base, out, {"merged_dir": str(merged)}, "full")


def _greedy(folder: Path) -> str:
    """The trained model's own greedy answer (what the worker verified the saved folder reproduces)."""
    from sluice.serving.loaded_model import load_model

    model = load_model("ref", folder)
    ids = model.encode_chat(CHAT)
    import torch

    with torch.no_grad():
        out = model.model.generate(torch.tensor([ids]), max_new_tokens=MAX_TOKENS, do_sample=False,
                                   pad_token_id=model.pad_id)
    # lstrip: MLflow's llm/v1/chat answer drops the completion's leading whitespace (the same tokens otherwise)
    return model.decode([t for t in out[0, len(ids):].tolist() if t not in model.eos_ids]).lstrip()


def _pyfunc_answer(store: TrackingTarget, name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking_uri)  # how a user points pyfunc at the store
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    (answer,) = loaded.predict({"messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0.0})
    assert answer["object"] == "chat.completion" and answer["usage"]["completion_tokens"] <= MAX_TOKENS
    return str(answer["choices"][0]["message"]["content"])


def test_a_lora_version_is_the_adapter_over_its_base_and_reloads_to_the_trained_weights(
        store: TrackingTarget, lora: Trained, monkeypatch: pytest.MonkeyPatch) -> None:
    client = mlflow_client(store.tracking_uri)
    registered = client.get_model_version(lora.name, lora.version)
    logged = find_logged_model(store, lora.run_id)
    assert logged is not None and registered.source == f"models:/{logged.model_id}"
    assert registered.run_id == lora.run_id  # (the sqlite registry keeps no model_id: the source is the link)
    assert [o.model_id for o in client.get_run(lora.run_id).outputs.model_outputs] == [logged.model_id]
    saved = Path(urlparse(logged.artifact_location).path)  # the embedded store keeps artifacts on disk
    flavour = yaml.safe_load((saved / "MLmodel").read_text())["flavors"]["transformers"]
    assert flavour["local_base_model_path"] == str(lora.base_dir) and flavour["peft_adaptor"] == "peft"
    assert (saved / "peft" / "adapter_config.json").is_file() and not (saved / "model").exists()  # no base copy
    trained, untrained = _greedy(lora.merged_dir), _greedy(lora.base_dir)
    assert trained != untrained  # the adapter changes the answer: re-initialised or missing weights would show
    assert _pyfunc_answer(store, lora.name, monkeypatch) == trained


def test_a_full_fine_tune_version_holds_the_merged_weights(store: TrackingTarget, full: Trained,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert mlflow_client(store.tracking_uri).get_model_version(full.name, full.version).source.startswith("models:/m-")
    assert _pyfunc_answer(store, full.name, monkeypatch) == _greedy(full.merged_dir)


def test_a_rerun_finds_its_version_and_serving_still_gets_plain_folders(store: TrackingTarget, lora: Trained,
                                                                         full: Trained, tmp_path: Path) -> None:
    logged = find_logged_model(store, lora.run_id)
    assert logged is not None  # a re-recorded training (a resumed run) logs no second model
    adapter_dir = lora.merged_dir.parent / "adapter"
    assert log_candidate_model(store, lora.run_id, lora.merged_dir, adapter_dir) == logged.model_id
    registry = ModelRegistry(store, lora.name)
    again = registry.register(lora.run_id, {TRAINING_RUN: lora.run_id})
    assert not again.created and again.version == lora.version and again.source.startswith("models:/m-")
    assert len(mlflow_client(store.tracking_uri).search_model_versions(f"name = '{lora.name}'")) == 1
    folder = registry.download(lora.version, tmp_path / "models")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()  # merged, no MLmodel
    assert not (folder / "MLmodel").exists()
    adapter = registry.download_adapter(lora.version, tmp_path / "models")
    assert adapter is not None and (adapter.path / "adapter_config.json").is_file()
    assert adapter.base_model == str(lora.base_dir)
    assert ModelRegistry(store, full.name).download_adapter(full.version, tmp_path / "models") is None
    assert (ModelRegistry(store, full.name).download(full.version, tmp_path / "full") / "config.json").is_file()


def test_a_run_without_a_logged_model_registers_its_folder_as_before(store: TrackingTarget, base: Path,
                                                                      tmp_path: Path) -> None:
    client = mlflow_client(store.tracking_uri)
    run = client.create_run(ensure_experiment(store))
    client.log_artifacts(run.info.run_id, str(base), "model")  # how versions were logged before
    client.set_terminated(run.info.run_id)
    registry = ModelRegistry(store, "old-style-model")
    version = registry.register(run.info.run_id, {})
    assert version.source == f"{run.info.artifact_uri}/model"
    assert (registry.download(version.version, tmp_path) / "config.json").is_file()


def test_eval_metrics_are_on_the_logged_model(store: TrackingTarget, lora: Trained) -> None:
    from sluice.core.evaluation.record import record_evaluation

    rows = [{"id": "1", "question": "q", "reference": "r"}]
    eval_run = record_evaluation(store, {TRAINING_RUN: lora.run_id, REPOSITORY: "demo"}, rows, ["r"],
                                 {"rougeL": [0.75]}, {"rougeL": 0.75}, EvaluationConfig(), "abc123" * 7)
    client = mlflow_client(store.tracking_uri)
    (found,) = client.search_logged_models([ensure_experiment(store)],
                                           filter_string=f"source_run_id = '{lora.run_id}'")
    metrics = {(m.key, m.run_id, m.dataset_digest): m.value for m in found.metrics or []}
    assert metrics[("rougeL", eval_run, "abc123abc123")] == 0.75
    assert client.get_run(eval_run).data.metrics["rougeL"] == 0.75  # and still on the evaluation run


def test_the_logged_model_answers_what_sluice_serve_answers(store: TrackingTarget, lora: Trained,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sluice.serving import ServingHandle

    config = SluiceConfig(tracking=TrackingConfig(embedded_dir=Path(store.tracking_uri.removeprefix("sqlite:///"))
                                                  .parent),
                          registry=RegistryConfig(model_name=lora.name),
                          serving=ServingConfig(port=0, state_dir=tmp_path / "serving", watch_seconds=60.0))
    with ServingHandle(config, api_keys=[API_KEY]) as server:
        server.wait_until_serving(lora.version)
        response = httpx.post(f"{server.url}/v1/chat/completions", timeout=60,
                              headers={"Authorization": f"Bearer {API_KEY}"},
                              json={"model": lora.name, "messages": CHAT, "max_tokens": MAX_TOKENS,
                                    "temperature": 0})
    assert response.status_code == 200, response.text
    served = response.json()["choices"][0]["message"]["content"]
    assert served.strip()  # an answer, not an empty string that anything equals
    assert _pyfunc_answer(store, lora.name, monkeypatch) == served.lstrip()  # (MLflow drops leading whitespace)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_mlflow_models_serve_answers_a_chat_request(store: TrackingTarget, lora: Trained) -> None:
    port = _free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    # the virtualenv's bin first, as when it is activated: `mlflow models serve` execs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": store.tracking_uri, "HF_HUB_OFFLINE": "1",
           "PATH": f"{mlflow_cli.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([str(mlflow_cli), "models", "serve", "-m", f"models:/{lora.name}@champion",
                               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else "mlflow models serve exited"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping in 120 s"
            time.sleep(0.5)
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", timeout=60,
                              json={"messages": CHAT, "max_tokens": MAX_TOKENS, "temperature": 0.0})
        assert response.status_code == 200, response.text
        body = response.json()
        answer = body[0] if isinstance(body, list) else body.get("predictions", body)
        answer = answer[0] if isinstance(answer, list) else answer
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"] == _greedy(lora.merged_dir)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
