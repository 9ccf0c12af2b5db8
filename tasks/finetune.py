"""Fine-tuning tasks: pin the training data to a lakeFS commit, run the
training process, and record it in MLflow with its lineage.

The training runs in its own process (``accelerate launch -m
sluice.train_worker``); this side streams its output into the Prefect log,
enforces the timeout, and turns a failure into an error carrying the
trainer's own message. A training is identified by its key (data commit,
resolved settings, base model): a finished MLflow run with that key is
reused instead of training again, and an interrupted one is continued — the
training resumes from its last checkpoint and logs into the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel

from sluice.config import SluiceConfig, TrainingConfig
from sluice.tracking import TrackingTarget, config_hash, ensure_experiment, find_finished_run, flatten, quiet_mlflow, tracking_target
from sluice.training import TrainingJob, accelerate_command, base_model_fingerprint, last_complete_checkpoint, training_key
from tasks.lakefs import CommitRef, download_dataset, lakefs_call, lakefs_client, resolve_commit

LOCAL = {"cache_policy": NO_CACHE}
DATA_KIND = {"sft": "sft", "dpo": "preference"}


class TrainingError(RuntimeError):
    """The training process failed; the message holds its last output."""


class PublishedDataMissing(TrainingError):
    """Nothing of the kind is published at the ref: ingest it first."""


class PublishedData(BaseModel):
    """Every published file of one dataset kind at one commit: what a
    training or an evaluation reads."""

    repository: str
    commit_id: str
    kind: str
    paths: list[str]  # lakeFS paths under datasets/<kind>/clean/
    local_files: list[str]
    rows: int

    def uri(self, prefix: str) -> str:
        return f"lakefs://{self.repository}/{self.commit_id}/{prefix}"


class TrainingResult(BaseModel):
    key: str
    run_id: str
    experiment_id: str
    tracking_uri: str
    reused: bool  # a finished run with this key existed: nothing was trained
    data_commit: str
    global_step: int
    resumed_from_step: int
    train_loss: float | None
    train_seconds: float
    tokens_per_second: float | None
    merged_model_uri: str  # runs:/<run>/model
    adapter_uri: str | None
    config_hash: str = ""  # of the resolved training settings


# ------------------------------------------------------------------ data and base model


def published_files(repository: str, commit_id: str, kind: str, datasets_prefix: str) -> list[str]:
    """The published (clean) parquet files of a kind at a commit."""
    import lakefs

    prefix = f"{datasets_prefix}/{kind}/clean/"
    with lakefs_call(f"list {prefix} at {repository}/{commit_id}"):
        return sorted(o.path for o in lakefs.Repository(repository, client=lakefs_client()).ref(commit_id)
                      .objects(prefix=prefix) if o.path.endswith(".parquet"))


@task(name="pin-published-data", retries=3, retry_delay_seconds=[1, 2, 4], cache_policy=NO_CACHE)
def pin_published_data(repository: str, data_ref: str, kind: str, datasets_prefix: str,
                       cache_dir: str) -> PublishedData:
    """Resolve ``data_ref`` to its commit id, list the kind's published files
    there, and download them (a commit's files never change: cached)."""
    commit: CommitRef = resolve_commit.fn(repository, data_ref)
    prefix = f"{datasets_prefix}/{kind}/clean/"
    paths = published_files(repository, commit.commit_id, kind, datasets_prefix)
    if not paths:
        raise PublishedDataMissing(f"no published {kind} data at {repository}/{commit.commit_id} ({prefix}): ingest some "
                            f"first (sluice ingest FILE --kind {kind})")
    local = [download_dataset.fn(repository, commit.commit_id, path, cache_dir).local_path for path in paths]
    import pyarrow.parquet as pq

    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in local)
    get_run_logger().info("training data: %d %s rows in %d file(s) at %s", rows, kind, len(paths), commit.commit_id)
    return PublishedData(repository=repository, commit_id=commit.commit_id, kind=kind, paths=paths,
                        local_files=local, rows=rows)


@task(name="describe-base-model", **LOCAL)
def describe_base_model(base_model: str) -> str:
    """The base model's fingerprint; a clear error if it is not there."""
    path = Path(base_model)
    looks_local = base_model.startswith((".", "/")) or path.exists()
    if looks_local and not (path / "config.json").is_file():
        raise TrainingError(f"base model {base_model!r} not found: build the tiny offline one with "
                            f"`sluice model init-tiny {base_model}`, or set training.base_model to a Hugging Face id")
    return base_model_fingerprint(base_model)


# ------------------------------------------------------------------ the MLflow run


def _open_run(target: TrackingTarget, experiment_id: str, key: str, config: SluiceConfig,
              data: PublishedData, datasets_prefix: str) -> str:
    """A new run for this key, or the one an interrupted attempt left open."""
    quiet_mlflow()
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from sluice.lakefs_dataset_source import LakeFSDatasetSource

    client = MlflowClient(target.tracking_uri)
    earlier = client.search_runs([experiment_id], filter_string=f"tags.`sluice.training_key` = '{key}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if earlier and earlier[0].info.status != "FINISHED":
        client.update_run(earlier[0].info.run_id, status="RUNNING")
        return earlier[0].info.run_id
    tags = {"sluice.training_key": key, "lakefs.repository": data.repository, "lakefs.commit": data.commit_id,
            "lakefs.uri": data.uri(f"{datasets_prefix}/{data.kind}/clean/"), "sluice.kind": data.kind,
            "prefect.flow_run_id": str(flow_run.get_id()), "prefect.flow_run_name": str(flow_run.get_name()),
            "sluice.config_hash": config_hash(config.training)[:16], "mlflow.source.git.commit": git_sha(),
            "mlflow.runName": f"{config.training.method}-{data.commit_id[:8]}-{key[:6]}"}
    run = client.create_run(experiment_id, tags={k: v for k, v in tags.items() if v})
    client.log_batch(run.info.run_id, params=[_param(k, v) for k, v in flatten(config.training, "training.").items()]
                     + [_param("base_model", config.training.base_model),
                        _param("data.rows", str(data.rows)), _param("data.files", str(len(data.paths)))])
    # through the client, never mlflow.set_tracking_uri(): that sets MLFLOW_TRACKING_URI process-wide
    dataset = mlflow.data.meta_dataset.MetaDataset(
        source=LakeFSDatasetSource(data.uri(f"{datasets_prefix}/{data.kind}/clean/")),
        name=f"{data.repository}-{data.kind}", digest=data.commit_id[:12])
    client.log_inputs(run.info.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[
        InputTag(MLFLOW_DATASET_CONTEXT, "training"), InputTag("lakefs.commit", data.commit_id)])])
    return run.info.run_id


def _param(key: str, value: str):  # type: ignore[no-untyped-def]
    from mlflow.entities import Param

    return Param(key, value)


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parents[1])
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _load_reused(target: TrackingTarget, experiment_id: str, run_id: str) -> TrainingResult:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="training_result.json",
                                               tracking_uri=target.tracking_uri)
    stored = TrainingResult.model_validate_json(Path(path).read_text())
    return stored.model_copy(update={"reused": True})


# ------------------------------------------------------------------ the training process


def _stream(process: subprocess.Popen[str], log_file: Path, deadline: float) -> tuple[deque[str], bool]:
    """Relay the training's output to the Prefect log (and a file); stop it
    at the deadline. The output's last lines, and whether it timed out."""
    logger = get_run_logger()
    tail: deque[str] = deque(maxlen=60)
    assert process.stdout is not None
    with log_file.open("a") as log:
        for line in process.stdout:
            log.write(line)
            tail.append(line.rstrip())
            if line.startswith(("metrics ", "training finished", "resuming", "starting")) or "Error" in line:
                logger.info(line.rstrip()[:500])
            if time.monotonic() > deadline:
                process.kill()
                break
    process.wait()
    return tail, time.monotonic() > deadline


def _launch(job: TrainingJob, run_dir: Path, target: TrackingTarget, run_id: str, timeout_minutes: float) -> dict:
    import torch

    job_path = run_dir / "job.json"
    job_path.write_text(job.model_dump_json(indent=2))
    command = accelerate_command(job.training, job_path, use_gpus=torch.cuda.is_available())
    env = {**os.environ, "MLFLOW_TRACKING_URI": target.tracking_uri, "MLFLOW_RUN_ID": run_id,
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "PYTHONUNBUFFERED": "1"}
    checkpoint = last_complete_checkpoint(run_dir)
    get_run_logger().info("training %s (%s)", " ".join(command[2:]),
                          f"resuming from {checkpoint.name}" if checkpoint else "from the start")
    (run_dir / "result.json").unlink(missing_ok=True)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                               cwd=Path(__file__).resolve().parents[1])
    tail, timed_out = _stream(process, run_dir / "training.log", time.monotonic() + timeout_minutes * 60)
    result_file = run_dir / "result.json"
    if process.returncode != 0 or not result_file.exists():
        last = last_complete_checkpoint(run_dir)
        resume = f"; a rerun resumes from {last.name}" if last else ""
        reason = (f"timed out after {timeout_minutes:g} minutes" if timed_out
                  else "was killed (SIGKILL: out of memory?)" if process.returncode in (-9, 137)
                  else f"failed (exit status {process.returncode})")
        errors = [line for line in tail if "Error" in line or "error" in line]
        raise TrainingError(f"training {reason}{resume}. " + (f"{errors[-1]}\n" if errors else "") +
                            "Last output:\n" + "\n".join(list(tail)[-25:]))
    return json.loads(result_file.read_text())


def _record_artifacts(target: TrackingTarget, run_id: str, run_dir: Path, result: dict[str, Any],
                      config: SluiceConfig, data: PublishedData) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(target.tracking_uri)
    client.log_artifacts(run_id, result["merged_dir"], artifact_path="model")
    if result.get("adapter_dir"):
        client.log_artifacts(run_id, result["adapter_dir"], artifact_path="adapter")
    client.log_text(run_id, config.model_dump_json(indent=2), "config/resolved_config.json")
    client.log_text(run_id, data.model_dump_json(indent=2), "data/manifest.json")
    client.log_artifact(run_id, str(run_dir / "training.log"), artifact_path="logs")
    final = {k: float(v) for k, v in (result.get("final_metrics") or {}).items() if isinstance(v, int | float)}
    summary = {"train_loss": result.get("train_loss"), "train_seconds": result.get("train_seconds"),
               "global_step": result.get("global_step"), "resumed_from_step": result.get("resumed_from_step"),
               "peak_rss_mb": result.get("peak_rss_mb"), "tokens_seen": result.get("tokens_seen")}
    for key, value in {**final, **summary}.items():
        if isinstance(value, int | float):
            client.log_metric(run_id, f"final.{key}", float(value))


# ------------------------------------------------------------------ the task


def _key(config: SluiceConfig, data: PublishedData, base_fingerprint: str) -> str:
    return training_key(data.commit_id, data.paths, config.training, base_fingerprint, config.training.system_prompt)


def _prefect_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect's cache key for a training: MLflow's key, per MLflow store
    (a cached result names a run in one store)."""
    config: SluiceConfig = parameters["config"]
    store = config_hash(tracking_target(config.tracking).tracking_uri)[:8]
    return f"train-{_key(config, parameters['data'], parameters['base_fingerprint'])}-{store}"


@task(name="train-model", cache_key_fn=_prefect_cache_key, persist_result=True)
def train_model(config: SluiceConfig, data: PublishedData, base_fingerprint: str) -> TrainingResult:
    """Train (or reuse an identical finished training) and record it in MLflow."""
    logger = get_run_logger()
    training: TrainingConfig = config.training
    key = _key(config, data, base_fingerprint)
    target = tracking_target(config.tracking)
    experiment_id = ensure_experiment(target, config.tracking.experiment)
    finished = find_finished_run(target, experiment_id, "sluice.training_key", key)
    if finished:
        logger.info("an identical training (key %s) already finished as MLflow run %s: reusing it", key, finished)
        return _load_reused(target, experiment_id, finished)

    run_id = _open_run(target, experiment_id, key, config, data, config.data.datasets_prefix)
    run_dir = training.output_dir.resolve() / key
    run_dir.mkdir(parents=True, exist_ok=True)
    job = TrainingJob(key=key, base_model=training.base_model, data_files=data.local_files,
                      output_dir=str(run_dir), training=training, system_prompt=training.system_prompt)
    from mlflow import MlflowClient

    client = MlflowClient(target.tracking_uri)
    try:
        result = _launch(job, run_dir, target, run_id, training.timeout_minutes)
        _record_artifacts(target, run_id, run_dir, result, config, data)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")  # the next attempt continues this run
        raise
    outcome = TrainingResult(
        key=key, run_id=run_id, experiment_id=experiment_id, tracking_uri=target.tracking_uri, reused=False,
        data_commit=data.commit_id, global_step=result["global_step"], resumed_from_step=result["resumed_from_step"],
        train_loss=result.get("train_loss"), train_seconds=result["train_seconds"],
        tokens_per_second=result.get("tokens_per_second"), merged_model_uri=f"runs:/{run_id}/model",
        adapter_uri=f"runs:/{run_id}/adapter" if result.get("adapter_dir") else None,
        config_hash=config_hash(config.training)[:16],
    )
    client.log_text(run_id, outcome.model_dump_json(indent=2), "training_result.json")
    client.set_terminated(run_id, status="FINISHED")
    for folder in run_dir.glob("checkpoint-*"):  # the result is in MLflow; checkpoints were for resuming
        shutil.rmtree(folder)
    return outcome
