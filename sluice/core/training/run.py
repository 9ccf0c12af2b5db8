"""Train, or reuse an identical finished training.

A training is identified by its key (data commit, resolved settings, base
model): a finished MLflow run with that key is reused instead of training
again, and an interrupted one is continued: the process resumes from its
last checkpoint and logs into the same run.
"""

from __future__ import annotations

import logging
import shutil

from sluice.core.config import TrainingConfig
from sluice.core.lake.published import PublishedData
from sluice.core.lineage import TRAINING_KEY, FlowRun
from sluice.core.models.base_model import ResolvedBaseModel
from sluice.core.registry.tracking import (
    TrackingTarget,
    config_hash,
    ensure_experiment,
    find_finished_run,
    mlflow_client,
)
from sluice.core.training.job import TrainingJob, training_key
from sluice.core.training.launch import launch_training
from sluice.core.training.mlflow_run import (
    RESULT_ARTIFACT,
    load_reused_result,
    open_training_run,
    record_training_artifacts,
)
from sluice.core.training.results import TrainingResult

log = logging.getLogger(__name__)


def key_of(training: TrainingConfig, data: PublishedData, base: ResolvedBaseModel) -> str:
    return training_key(data.data_commit, data.paths, training, base.fingerprint, training.system_prompt)


def train_or_reuse(training: TrainingConfig, target: TrackingTarget, data: PublishedData, base: ResolvedBaseModel,
                   flow_run: FlowRun, logger: logging.Logger | logging.LoggerAdapter = log) -> TrainingResult:
    """Train (or reuse an identical finished training) and record it in MLflow."""
    key = key_of(training, data, base)
    experiment_id = ensure_experiment(target)
    finished = find_finished_run(target, experiment_id, TRAINING_KEY, key)
    if finished:
        logger.info("an identical training (key %s) already finished as MLflow run %s: reusing it", key, finished)
        return load_reused_result(target, finished)

    run_id = open_training_run(target, experiment_id, key, training, data, base, flow_run)
    run_dir = training.output_dir.resolve() / key
    run_dir.mkdir(parents=True, exist_ok=True)
    job = TrainingJob(key=key, base_model=base.path, data_files=data.local_files,
                      output_dir=str(run_dir), training=training, system_prompt=training.system_prompt)
    client = mlflow_client(target.tracking_uri)
    try:
        result = launch_training(job, run_dir, target.tracking_uri, run_id, training.timeout_minutes, logger)
        record_training_artifacts(target, run_id, run_dir, result, training, data)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")  # the next attempt continues this run
        raise
    outcome = TrainingResult(
        key=key, run_id=run_id, experiment_id=experiment_id, tracking_uri=target.tracking_uri, reused=False,
        data_commit=data.data_commit, global_step=result["global_step"],
        resumed_from_step=result["resumed_from_step"], train_loss=result.get("train_loss"),
        train_seconds=result["train_seconds"], tokens_per_second=result.get("tokens_per_second"),
        merged_model_uri=f"runs:/{run_id}/model",
        adapter_uri=f"runs:/{run_id}/adapter" if result.get("adapter_dir") else None,
        config_hash=config_hash(training)[:16],
    )
    client.log_text(run_id, outcome.model_dump_json(indent=2), RESULT_ARTIFACT)
    client.set_terminated(run_id, status="FINISHED")
    for folder in run_dir.glob("checkpoint-*"):  # the result is in MLflow; checkpoints were for resuming
        shutil.rmtree(folder)
    return outcome
