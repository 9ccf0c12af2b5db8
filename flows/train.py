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

from sluice.core.config import Method, SluiceConfig, with_training_knobs
from sluice.core.training.job import DATA_KIND
from sluice.core.training.results import TrainingResult
from tasks.finetune import check_chat_template, resolve_base_model, train_model
from tasks.lakefs import ensure_repository, pin_published_data
from tasks.registry import resolve_tracking_target
from tasks.reports import report_training


@flow(name="train", log_prints=True)
def train(data_ref: str = "main", base_model: str | None = None, method: Method | None = None,
          max_steps: int | None = None, learning_rate: float | None = None,
          config: SluiceConfig = SluiceConfig()) -> TrainingResult:  # noqa: B008
    """Fine-tune the base model on the data published at ``data_ref``.

    Args:
        data_ref: lakeFS branch, tag or commit of the data (pinned to its commit id).
        base_model: A local folder, a Hugging Face id or models:/name@alias (empty: config.training.base_model).
        method: sft or dpo (empty: config.training.method).
        max_steps: Optimizer steps (empty: config.training.max_steps).
        learning_rate: Peak learning rate (empty: config.training.learning_rate).
        config: Every setting; the fields above, when given, override its training section.
    """
    config = with_training_knobs(config, base_model=base_model, method=method, max_steps=max_steps,
                                 learning_rate=learning_rate)
    lake, training = config.lakefs, config.training
    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    data = pin_published_data(repo.repository, data_ref, DATA_KIND[training.method], config.data.datasets_prefix,
                              str(config.data.work_dir / "datasets"))
    target = resolve_tracking_target(config.tracking)
    base = resolve_base_model(training.base_model, str(config.data.work_dir / "models"), target)
    check_chat_template(training, base, data)
    state = train_model(training, target, data, base, return_state=True)
    result = state.result()
    if state.name == "Cached":  # Prefect's cache answered: nothing was trained in this run
        result = result.model_copy(update={"reused": True})
    get_run_logger().info("%s run %s (step %d, loss %s)", "reused" if result.reused else "trained", result.run_id,
                          result.global_step, result.train_loss)
    report_training(result, config, data_ref)
    return result
