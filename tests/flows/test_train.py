"""Fine-tuning on the tiny model: real TRL training in its own process,
pinned to a lakeFS commit, tracked in a real MLflow store, under a real
Prefect API. One repository with the demo data published is shared by the
module (ingesting it takes a few seconds); each test has its own MLflow
store and checkpoint folder."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import lakefs
import pytest
from mlflow import MlflowClient
from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

from flows.train import train
from sluice.core.config import DataConfig, SluiceConfig, TrackingConfig, TrainingConfig
from sluice.core.lake.published import PublishedDataMissing
from sluice.core.models.base_model import ModelError
from sluice.core.training.job import last_complete_checkpoint
from sluice.core.training.results import TrainingError
from tests.conftest import latest_artifact, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness", "lake_environment")]


def _config(published, tiny_model: Path, tmp_path: Path, **training: object) -> SluiceConfig:  # type: ignore[no-untyped-def]
    lake, _ = published
    settings = {"max_steps": 8, "logging_steps": 2, "save_steps": 4, "batch_size": 8, "learning_rate": 2e-3,
                "max_length": 256, **training}
    return SluiceConfig(lakefs=lake, data=DataConfig(work_dir=tmp_path / "work"),
                        training=TrainingConfig(base_model=str(tiny_model), output_dir=tmp_path / "training",
                                                **settings),
                        tracking=TrackingConfig(embedded_dir=tmp_path / "mlflow"))


def _uri(config: SluiceConfig) -> str:
    return f"sqlite:///{config.tracking.embedded_dir / 'mlflow.db'}"


def _client(config: SluiceConfig) -> MlflowClient:
    return MlflowClient(_uri(config))


def _runs_with_key(config: SluiceConfig, key: str) -> list:
    client = _client(config)
    experiment = client.get_experiment_by_name(config.tracking.experiment)
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.`sluice.training_key` = '{key}'")


def _greedy(model, tokenizer, question: str) -> list[int]:  # type: ignore[no-untyped-def]
    import torch

    encoded = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**encoded, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, encoded["input_ids"].shape[1]:].tolist()


# ------------------------------------------------------------------ SFT with LoRA, tracked


def test_sft_lora_training_is_tracked_with_its_lakefs_lineage(published, tiny_model, tmp_path, lakefs_client):
    lake, main_commit = published
    config = _config(published, tiny_model, tmp_path)
    result = train(data_ref="main", config=config)

    assert result.data_commit == main_commit and not result.reused
    assert result.global_step == 8 and result.resumed_from_step == 0
    assert result.tokens_per_second and result.tokens_per_second > 0
    run = _client(config).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the next flow in this process may use another store

    # every resolved training setting is a param, as the config holds it
    assert run.data.params["training.learning_rate"] == "0.002"
    assert run.data.params["training.lora.target_modules"] == json.dumps(config.training.lora.target_modules)
    assert run.data.params["data.rows"] == "600"
    assert {k for k in run.data.params if k.startswith("training.")} == {
        f"training.{k}" for k in _flat_training_keys(config)}

    # lineage: the data commit (not the branch) as tags and as the dataset input's lakeFS source
    tags = run.data.tags
    assert tags["lakefs.commit"] == main_commit and tags["lakefs.repository"] == lake.repository
    assert tags["prefect.flow_run_id"] and tags["sluice.config_hash"] and tags["sluice.training_key"] == result.key
    assert len(tags["mlflow.source.git.commit"]) == 40
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.source_type == "lakefs"
    assert json.loads(dataset_input.dataset.source)["uri"] == \
        f"lakefs://{lake.repository}/{main_commit}/datasets/sft/clean/"

    # metrics streamed while training, not just at the end
    client = _client(config)
    losses = client.get_metric_history(result.run_id, "loss")
    assert [m.step for m in losses] == [1, 2, 4, 6, 8]
    for name in ("learning_rate", "grad_norm", "tokens_per_second", "peak_rss_mb"):
        assert len(client.get_metric_history(result.run_id, name)) >= 4, name
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), sorted(run.data.metrics)

    # artifacts: adapter, merged model + tokenizer, resolved config, data manifest
    import mlflow

    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"adapter", "model", "config", "data", "logs", "training_result.json"} <= names
    manifest = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="data/manifest.json", tracking_uri=_uri(config)
    )).read_text())
    assert manifest["data_commit"] == main_commit and manifest["rows"] == 600

    # the merged model reloads and generates exactly what base + adapter generates
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    uri = _uri(config)
    merged_dir = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="model", tracking_uri=uri)
    adapter_dir = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="adapter", tracking_uri=uri)
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    question = "Context: the east gate opens at 07:30.\nQuestion: When does the east gate open?"
    assert _greedy(merged, tokenizer, question) == _greedy(adapted, tokenizer, question)
    assert not all(bool((a == b).all()) for a, b in zip(merged.parameters(), base.parameters(), strict=True))

    report = latest_artifact("train")
    assert main_commit in report and result.run_id in report and "training.max_steps" in report


def _flat_training_keys(config: SluiceConfig) -> set[str]:
    from sluice.core.registry.tracking import flatten

    return set(flatten(config.training))


def test_the_same_commit_config_and_base_model_is_not_trained_again(published, tiny_model, tmp_path):
    config = _config(published, tiny_model, tmp_path, max_steps=2, save_steps=50)
    first = train(data_ref="main", config=config)
    log = Path(config.training.output_dir) / first.key / "training.log"
    trained_at = log.stat().st_mtime

    by_commit = train(data_ref=first.data_commit, config=config)  # Prefect's cache: same key
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):  # Prefect's cache bypassed: MLflow's run
        by_run = train(data_ref="main", config=config)
    assert by_commit.run_id == by_run.run_id == first.run_id
    assert by_commit.reused and by_run.reused
    assert log.stat().st_mtime == trained_at
    assert len(_runs_with_key(config, first.key)) == 1

    changed = train(data_ref="main", config=_config(published, tiny_model, tmp_path, max_steps=2, save_steps=50,
                                                    learning_rate=1e-3))
    assert changed.key != first.key and not changed.reused and changed.run_id != first.run_id


# ------------------------------------------------------------------ kill and resume


def _kill_training_after_checkpoint(run_root: Path, step: int, killed: list[int]) -> None:
    """Watch for a complete checkpoint at ``step`` or later, then SIGKILL
    the training process (as the OOM killer would)."""
    import psutil

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for run_dir in run_root.glob("*"):
            checkpoint = last_complete_checkpoint(run_dir)
            if checkpoint and int(checkpoint.name.split("-")[1]) >= step:
                for child in psutil.Process().children(recursive=True):
                    if "sluice.core.training.worker" in " ".join(child.cmdline()):
                        child.kill()
                        killed.append(child.pid)
                return
        time.sleep(0.05)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_a_killed_training_resumes_from_its_last_checkpoint(published, tiny_model, tmp_path, finetune):
    config = _config(published, tiny_model, tmp_path, finetune=finetune, max_steps=40, save_steps=4,
                     logging_steps=4, learning_rate=1e-3)
    killed: list[int] = []
    watcher = threading.Thread(target=_kill_training_after_checkpoint,
                               args=(config.training.output_dir, 8, killed), daemon=True)
    watcher.start()
    with pytest.raises(TrainingError) as failed:
        train(data_ref="main", config=config)
    watcher.join()
    assert killed, "the training finished before it could be killed"
    message = str(failed.value)
    assert "training failed" in message or "was killed" in message, message[:300]
    assert "a rerun resumes from checkpoint-" in message
    (run_dir,) = config.training.output_dir.iterdir()
    interrupted = last_complete_checkpoint(run_dir)
    assert interrupted is not None
    (earlier_run,) = _runs_with_key(config, run_dir.name)
    assert earlier_run.info.status == "FAILED"

    resumed = train(data_ref="main", config=config)
    assert resumed.resumed_from_step == int(interrupted.name.split("-")[1]) >= 8
    assert resumed.global_step == 40
    assert resumed.run_id == earlier_run.info.run_id  # the same MLflow run, continued
    losses = _client(config).get_metric_history(resumed.run_id, "loss")
    assert max(m.step for m in losses) == 40
    assert not list(run_dir.glob("checkpoint-*"))  # finished: the checkpoints are gone


# ------------------------------------------------------------------ DPO and failures


def test_dpo_trains_a_lora_adapter_on_preference_data(published, tiny_model, tmp_path):
    lake, main_commit = published
    config = _config(published, tiny_model, tmp_path, method="dpo", max_steps=4, batch_size=4,
                     system_prompt="Answer from the context.")
    result = train(data_ref=main_commit, config=config)
    run = _client(config).get_run(result.run_id)
    assert result.global_step == 4 and result.adapter_uri
    assert run.data.params["training.method"] == "dpo" and run.data.params["data.rows"] == "180"
    assert json.loads(run.inputs.dataset_inputs[0].dataset.source)["uri"].endswith("/datasets/preference/clean/")
    assert any(k.startswith("rewards") for k in run.data.metrics), sorted(run.data.metrics)


def test_a_failing_trainer_fails_the_flow_with_its_own_error(published, tiny_model, tmp_path):
    config = _config(published, tiny_model, tmp_path, lora={"target_modules": ["no_such_projection"]})
    with pytest.raises(TrainingError) as failed:
        train(data_ref="main", config=config)
    assert "no_such_projection" in str(failed.value)
    (run,) = _runs_with_key(config, next(config.training.output_dir.iterdir()).name)
    assert run.info.status == "FAILED"


def test_a_missing_base_model_is_a_clear_error(published, tmp_path):
    config = _config(published, tmp_path / "nowhere", tmp_path)
    with pytest.raises(ModelError, match="sluice model init-tiny"):
        train(data_ref="main", config=config)


def test_a_ref_without_published_data_is_a_clear_error(published, tiny_model, tmp_path, lakefs_client):
    lake, _ = published
    empty = lakefs.Repository(lake.repository, client=lakefs_client).branch(unique_name("empty"))
    empty.create(source_reference="main")
    for obj in list(empty.objects(prefix="datasets/sft/clean/")):
        empty.object(obj.path).delete()
    empty.commit(message="drop sft data")
    with pytest.raises(PublishedDataMissing, match="no published sft data"):
        train(data_ref=empty.id, config=_config(published, tiny_model, tmp_path))


# ------------------------------------------------------------------ an MLflow server instead of the local store


@pytest.fixture
def mlflow_server(tmp_path):  # type: ignore[no-untyped-def]
    """A real ``mlflow server`` on loopback (sqlite backend, proxied artifacts)."""
    import signal
    import subprocess
    import sys
    import urllib.request

    from sluice.shell.stack import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start") from None
            time.sleep(0.5)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


def test_training_is_tracked_on_an_mlflow_server_from_the_environment(published, tiny_model, tmp_path,
                                                                      mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    config = _config(published, tiny_model, tmp_path, max_steps=2, save_steps=50)
    result = train(data_ref="main", config=config)
    assert result.tracking_uri == mlflow_server
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["lakefs.commit"] == result.data_commit
    assert len(client.get_metric_history(result.run_id, "loss")) >= 2
    assert {"adapter", "model", "config", "data"} <= {a.path for a in client.list_artifacts(result.run_id)}
    assert list((tmp_path / "server-artifacts").rglob("model.safetensors"))  # stored by the server
    assert not (tmp_path / "mlflow").exists()  # the embedded store was not used
