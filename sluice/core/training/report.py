"""A training's markdown report: the data commit, where the MLflow run is,
the final numbers, and every setting that differs from the defaults."""

from __future__ import annotations

from sluice.core.config import SluiceConfig
from sluice.core.registry.tracking import flatten
from sluice.core.training.results import TrainingResult


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
