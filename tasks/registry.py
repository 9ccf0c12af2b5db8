"""Registry tasks: register a version with its lineage, tag it, fetch it,
and move the @champion / @previous aliases (each move in the ledger). The
work is in ``sluice.core.registry`` and ``sluice.core.promotion``; these add
logging and the flow run's identity."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from sluice.core.config import EvaluationConfig, RegistryConfig, TrainingConfig
from sluice.core.promotion.aliases import AliasMove, apply_promotion, apply_rollback
from sluice.core.registry import prompts
from sluice.core.registry.client import ModelRegistry, ModelVersionRef
from sluice.core.registry.tracking import TrackingTarget, tracking_target
from tasks import UNCACHED, current_flow_run

resolve_tracking_target = task(tracking_target, name="resolve-tracking-target", **UNCACHED)


@task(name="find-alias-version", **UNCACHED)
def alias_version(target: TrackingTarget, registry: RegistryConfig, alias: str) -> str | None:
    """The version an alias points at; None when there is none."""
    return ModelRegistry(target, registry.model_name).alias_version(alias)


@task(name="describe-model-version", **UNCACHED)
def version_identity(target: TrackingTarget, registry: RegistryConfig, version: str) -> str:
    """What a version is (its training run), so that it is evaluated once per data commit."""
    return ModelRegistry(target, registry.model_name).identity(version)


@task(name="register-model-version", **UNCACHED)
def register_model_version(target: TrackingTarget, registry: RegistryConfig, training_run_id: str,
                           lineage: dict[str, str], data_commit: str) -> ModelVersionRef:
    """Register the training run's merged model, once (a rerun finds the version)."""
    version = ModelRegistry(target, registry.model_name).register(training_run_id, lineage,
                                                                  description=f"data commit {data_commit}")
    get_run_logger().info("%s %s version %s from run %s", "registered" if version.created else "found",
                          version.name, version.version, training_run_id)
    return version


@task(name="register-prompts", **UNCACHED)
def register_prompts(target: TrackingTarget, registry: RegistryConfig, training: TrainingConfig,
                     evaluation: EvaluationConfig) -> prompts.PromptRefs:
    """The candidate's system prompt and template in MLflow's prompt registry (a new prompt version only for
    a changed text)."""
    refs = prompts.register_prompts(ModelRegistry(target, registry.model_name),
                                    prompts.prompt_set(training, evaluation))
    get_run_logger().info("prompts: %s", ", ".join(f"{kind} {uri}" for kind, uri in refs.uris.items()))
    return refs


@task(name="link-prompts", **UNCACHED)
def link_prompts(target: TrackingTarget, registry: RegistryConfig, version: str, refs: prompts.PromptRefs) -> None:
    """The prompts named on the model version and linked to its logged model."""
    prompts.link_prompts(ModelRegistry(target, registry.model_name), version, refs)


@task(name="read-version-prompts", **UNCACHED)
def evaluation_as_served(target: TrackingTarget, registry: RegistryConfig, version: str,
                         evaluation: EvaluationConfig) -> EvaluationConfig:
    """The evaluation settings with the version's linked system prompt and template: each side of the gate
    is evaluated with the prompts it would serve with."""
    linked = prompts.linked_prompts(ModelRegistry(target, registry.model_name), version)
    if linked is None:
        get_run_logger().warning("version %s has no linked prompts (registered before prompts were tracked): it "
                                 "is evaluated with the candidate's", version)
    return prompts.evaluation_as_served(evaluation, linked)


@task(name="download-model-version", **UNCACHED)
def download_model_version(target: TrackingTarget, registry: RegistryConfig, version: str, into: str) -> str:
    """The version's model files in a local folder (for evaluation)."""
    return str(ModelRegistry(target, registry.model_name).download(version, Path(into)))


@task(name="tag-version", **UNCACHED)
def tag_version(target: TrackingTarget, registry: RegistryConfig, version: str, tags: dict[str, str]) -> None:
    ModelRegistry(target, registry.model_name).tag(version, tags)


@task(name="move-aliases", **UNCACHED)
def promote_version(target: TrackingTarget, registry: RegistryConfig, version: str,
                    evidence: dict) -> list[AliasMove]:
    """@champion → version, the old champion → @previous; each move recorded."""
    return apply_promotion(ModelRegistry(target, registry.model_name), version, evidence, current_flow_run(),
                           get_run_logger())


@task(name="roll-back", **UNCACHED)
def roll_back(target: TrackingTarget, registry: RegistryConfig, reason: str) -> list[AliasMove]:
    """@champion back to @previous; each move recorded."""
    return apply_rollback(ModelRegistry(target, registry.model_name), reason, current_flow_run(), get_run_logger())
