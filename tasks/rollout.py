"""Canary tasks: put a gated version on trial as @challenger, read where the trial stands, count its
traffic, and act on the verdict. The work is in ``sluice.core.promotion.rollout`` and
``sluice.core.promotion.canary_traffic``; these add logging and the flow run's identity."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from sluice.core.config import JudgeConfig, RegistryConfig
from sluice.core.promotion.aliases import AliasMove
from sluice.core.promotion.canary import CanaryEvidence, CanaryVerdict
from sluice.core.promotion.canary_traffic import measure_canary
from sluice.core.promotion.rollout import (
    CanaryState,
    adopt_challenger,
    conclude_canary,
    finish_interrupted_promotion,
    read_canary,
    start_canary,
)
from sluice.core.promotion.shadow import ShadowEvidence, measure_shadow
from sluice.core.registry.client import ModelRegistry
from sluice.core.registry.tracking import TrackingTarget
from tasks import UNCACHED, current_flow_run


@task(name="start-canary", **UNCACHED)
def put_on_trial(target: TrackingTarget, registry: RegistryConfig, version: str, share: float,
                 evidence: dict[str, Any], rollout: Literal["canary", "shadow"] = "canary") -> list[AliasMove]:
    """@challenger → version, with its share and start as tags; the move recorded."""
    moves = start_canary(ModelRegistry(target, registry.model_name), version, share, evidence, current_flow_run(),
                         get_run_logger(), rollout)
    get_run_logger().info("version %s on trial (%s) as @challenger for %.0f %% of the default model's traffic%s",
                          version, rollout, 100 * share, "" if moves else " (already)")
    return moves


@task(name="read-canary", **UNCACHED)
def read_trial(target: TrackingTarget, registry: RegistryConfig, share: float) -> CanaryState:
    """Where the canary stands; a challenger set by hand gets its start (now) and the configured share."""
    models = ModelRegistry(target, registry.model_name)
    state = read_canary(models)
    if state.challenger is None or state.challenger == state.champion:
        return state
    if state.started is None or state.share is None:
        get_run_logger().info("@challenger version %s carries no canary start or share: its window starts now",
                              state.challenger)
        state = adopt_challenger(models, state, share)
    return state


@task(name="measure-canary", **UNCACHED)
def measure_trial(request_log: str, feedback_db: str, challenger: str, champion: str, started: datetime,
                  judge: JudgeConfig | None = None, judge_sample: int = 20) -> CanaryEvidence:
    """Both sides' canary traffic since the trial started, from the serving request log and feedback store;
    each side's latest ``judge_sample`` answers rated by the LLM judge too when ``judge`` names a model."""
    return measure_canary(Path(request_log), Path(feedback_db), challenger=challenger, champion=champion,
                          started=started, judge=judge, judge_sample=judge_sample)


@task(name="measure-shadow", **UNCACHED)
def measure_shadow_trial(request_log: str, challenger: str, champion: str, started: datetime, judge: JudgeConfig,
                         max_judged: int) -> ShadowEvidence:
    """The shadow answers since the trial started, paired with the champion's and compared (MiniLM; the
    judge's pairwise preference too when ``judge`` names a model)."""
    from sluice.core.evaluation.metrics.embeddings import default_embedder

    return measure_shadow(Path(request_log), challenger=challenger, champion=champion, started=started,
                          embedder=default_embedder(), judge=judge, max_judged=max_judged)


@task(name="conclude-canary", **UNCACHED)
def end_trial(target: TrackingTarget, registry: RegistryConfig, verdict: CanaryVerdict,
              evidence: dict[str, Any]) -> list[AliasMove]:
    """Promote or withdraw the challenger as the verdict says; tags and ledger keep the evidence."""
    return conclude_canary(ModelRegistry(target, registry.model_name), verdict, evidence, current_flow_run(),
                           get_run_logger())


@task(name="finish-interrupted-promotion", **UNCACHED)
def finish_promotion(target: TrackingTarget, registry: RegistryConfig, version: str) -> list[AliasMove]:
    get_run_logger().warning("@challenger and @champion both name version %s: finishing its promotion", version)
    return finish_interrupted_promotion(ModelRegistry(target, registry.model_name), version, current_flow_run())


@task(name="report-canary", **UNCACHED)
def report_trial(markdown: str, summary: str, key: str = "canary") -> None:
    create_markdown_artifact(markdown=markdown, key=key, description=summary[:500])
