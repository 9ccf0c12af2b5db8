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
from prefect.artifacts import create_markdown_artifact

from sluice.config import SluiceConfig
from sluice.tracking import flatten
from tasks.finetune import DATA_KIND, TrainingResult, describe_base_model, pin_published_data, train_model
from tasks.lakefs import ensure_repository


@flow(name="train", log_prints=True)
def train(data_ref: str = "main", config: SluiceConfig = SluiceConfig()) -> TrainingResult:  # noqa: B008
    """Fine-tune ``config.training.base_model`` on the data published at ``data_ref``."""
    lake, training = config.lakefs, config.training
    repo = ensure_repository(lake.repository, lake.storage_namespace, lake.default_branch)
    data = pin_published_data(repo.repository, data_ref, DATA_KIND[training.method], config.data.datasets_prefix,
                             str(config.data.work_dir / "datasets"))
    fingerprint = describe_base_model(training.base_model)
    state = train_model(config, data, fingerprint, return_state=True)
    result = state.result()
    if state.name == "Cached":  # Prefect's cache answered: nothing was trained in this run
        result = result.model_copy(update={"reused": True})
    get_run_logger().info("%s run %s (step %d, loss %s)", "reused" if result.reused else "trained", result.run_id,
                          result.global_step, result.train_loss)
    create_markdown_artifact(markdown=training_report(result, config, data_ref), key="train",
                             description=f"training on {data.commit_id[:12]}")
    return result


def config_changes(config: SluiceConfig) -> list[tuple[str, str, str]]:
    """(setting, default, value) for every setting that differs from the defaults."""
    current, default = flatten(config), flatten(SluiceConfig())
    return [(key, default.get(key, "—"), value) for key, value in sorted(current.items())
            if default.get(key) != value]


def mlflow_location(result: TrainingResult) -> str:
    if result.tracking_uri.startswith("http"):
        return f"{result.tracking_uri.rstrip('/')}/#/experiments/{result.experiment_id}/runs/{result.run_id}"
    return f"run `{result.run_id}` — browse with `mlflow ui --backend-store-uri {result.tracking_uri}`"


def training_report(result: TrainingResult, config: SluiceConfig, data_ref: str) -> str:
    changes = config_changes(config)
    lines = [f"# Training {'reused' if result.reused else 'finished'}: {config.training.method} "
             f"({config.training.finetune}) on `{config.training.base_model}`", "",
             f"- data: `{data_ref}` → commit `{result.data_commit}` "
             f"(`lakefs://{config.lakefs.repository}/{result.data_commit}/`)",
             f"- MLflow: {mlflow_location(result)}",
             f"- model: `{result.merged_model_uri}`" + (f", adapter `{result.adapter_uri}`" if result.adapter_uri else ""),
             f"- steps: {result.global_step}" + (f" (resumed from step {result.resumed_from_step})"
                                                if result.resumed_from_step else ""),
             f"- final training loss: {result.train_loss}; {result.train_seconds:.1f} s; "
             f"{result.tokens_per_second or 0:.0f} tokens/s", ""]
    if changes:
        lines += ["| setting | default | this run |", "|---|---|---|"]
        lines += [f"| `{key}` | {default} | {value} |" for key, default, value in changes]
    else:
        lines.append("All settings are the defaults.")
    return "\n".join(lines) + "\n"
