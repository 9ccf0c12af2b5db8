"""A training's MLflow run: opened (or continued) before the process starts,
filled with the artifacts after it finished, or read back when an identical
training is reused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sluice.core import lineage
from sluice.core.config import TrainingConfig
from sluice.core.lake.published import PublishedData
from sluice.core.lineage import FlowRun
from sluice.core.models.base_model import MODEL_CARD, ResolvedBaseModel
from sluice.core.registry.logged_model import log_candidate_model
from sluice.core.registry.tracking import TrackingTarget, config_hash, flatten, mlflow_client
from sluice.core.training.results import TrainingResult

RESULT_ARTIFACT = "training_result.json"


def open_training_run(target: TrackingTarget, experiment_id: str, key: str, training: TrainingConfig,
                      data: PublishedData, base: ResolvedBaseModel, flow_run: FlowRun) -> str:
    """A new run for this key, or the one an interrupted attempt left open."""
    import mlflow
    from mlflow.entities import DatasetInput, InputTag, Param
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from sluice.core.registry.lakefs_dataset_source import LakeFSDatasetSource

    client = mlflow_client(target.tracking_uri)
    earlier = client.search_runs([experiment_id], filter_string=f"tags.`{lineage.TRAINING_KEY}` = '{key}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if earlier and earlier[0].info.status != "FINISHED":
        client.update_run(earlier[0].info.run_id, status="RUNNING")
        return earlier[0].info.run_id
    tags = lineage.training_run_tags(flow_run, key=key, repository=data.repository, data_commit=data.data_commit,
                                     data_uri=data.uri, kind=data.kind, config_hash=config_hash(training)[:16],
                                     run_name=f"{training.method}-{data.data_commit[:8]}-{key[:6]}")
    run = client.create_run(experiment_id, tags=tags)
    params = {**flatten(training, "training."), "base_model": training.base_model, "base_model.source": base.source,
              "base_model.fingerprint": base.fingerprint, "data.rows": str(data.rows),
              "data.files": str(len(data.paths))}
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    card = Path(base.path) / MODEL_CARD
    if card.is_file():  # a fetched model: where its bytes came from
        client.log_artifact(run.info.run_id, str(card), artifact_path="base_model")
    dataset = mlflow.data.meta_dataset.MetaDataset(source=LakeFSDatasetSource(data.uri),
                                                   name=f"{data.repository}-{data.kind}", digest=data.data_commit[:12])
    client.log_inputs(run.info.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[
        InputTag(MLFLOW_DATASET_CONTEXT, "training"), InputTag(lineage.DATA_COMMIT, data.data_commit)])])
    return run.info.run_id


def record_training_artifacts(target: TrackingTarget, run_id: str, run_dir: Path, result: dict[str, Any],
                              training: TrainingConfig, data: PublishedData) -> None:
    """The adapter, the merged model, the settings, the data manifest, the log and the final metrics; and the
    candidate as an MLflow logged model (the adapter over its base, or the merged weights), which the
    registry registers. The plain folders stay as run artifacts: the built-in server loads those."""
    client = mlflow_client(target.tracking_uri)
    client.log_artifacts(run_id, result["merged_dir"], artifact_path="model")
    if result.get("adapter_dir"):
        client.log_artifacts(run_id, result["adapter_dir"], artifact_path="adapter")
    log_candidate_model(target, run_id, Path(result["merged_dir"]),
                        Path(result["adapter_dir"]) if result.get("adapter_dir") else None)
    client.log_text(run_id, training.model_dump_json(indent=2), "config/training.json")
    client.log_text(run_id, data.model_dump_json(indent=2), "data/manifest.json")
    client.log_artifact(run_id, str(run_dir / "training.log"), artifact_path="logs")
    final = {k: float(v) for k, v in (result.get("final_metrics") or {}).items() if isinstance(v, int | float)}
    summary = {"train_loss": result.get("train_loss"), "train_seconds": result.get("train_seconds"),
               "global_step": result.get("global_step"), "resumed_from_step": result.get("resumed_from_step"),
               "peak_rss_mb": result.get("peak_rss_mb"), "tokens_seen": result.get("tokens_seen")}
    for key, value in {**final, **summary}.items():
        if isinstance(value, int | float):
            client.log_metric(run_id, f"final.{key}", float(value))


def load_reused_result(target: TrackingTarget, run_id: str) -> TrainingResult:
    import mlflow

    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=RESULT_ARTIFACT,
                                               tracking_uri=target.tracking_uri)
    stored = TrainingResult.model_validate_json(Path(path).read_text())
    return stored.model_copy(update={"reused": True})
