"""Fine-tune a model on published data, pinned to one lakeFS commit.

1. Resolve the data ref to its commit id (never a moving branch) and fetch
   the kind's published rows there: sft data for SFT, preference data for DPO.
2. Check the base model (a local folder or a Hugging Face id).
3. Train in a separate process, or reuse an identical finished training.
   MLflow records the settings, the lakeFS lineage, the metrics and the
   adapter and merged model.
4. Report: the data commit, the settings that differ from the defaults, the
   final metrics and where the MLflow run is.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from sluice.core.config import SluiceConfig
from sluice.core.training.job import DATA_KIND
from sluice.core.training.results import TrainingResult
from tasks.finetune import describe_base_model, train_model
from tasks.lakefs import ensure_repository, pin_published_data
from tasks.registry import resolve_tracking_target
from tasks.reports import report_training


@flow(name="train", log_prints=True)
def train(data_ref: str = "main", config: SluiceConfig = SluiceConfig()) -> TrainingResult:  # noqa: B008
    """Fine-tune ``config.training.base_model`` on the data published at ``data_ref``."""
    lake, training = config.lakefs, config.training
    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    data = pin_published_data(repo.repository, data_ref, DATA_KIND[training.method], config.data.datasets_prefix,
                              str(config.data.work_dir / "datasets"))
    fingerprint = describe_base_model(training.base_model)
    state = train_model(training, resolve_tracking_target(config.tracking), data, fingerprint, return_state=True)
    result = state.result()
    if state.name == "Cached":  # Prefect's cache answered: nothing was trained in this run
        result = result.model_copy(update={"reused": True})
    get_run_logger().info("%s run %s (step %d, loss %s)", "reused" if result.reused else "trained", result.run_id,
                          result.global_step, result.train_loss)
    report_training(result, config, data_ref)
    return result
