"""Register the candidate and pass it through the gate.

1. Register the training run's model as a version, with its lineage and its
   prompts (system prompt, template: MLflow's prompt registry) — once: a
   rerun finds it; the same weights with changed prompts are a new version.
2. If the version already is @champion (an unchanged rerun), stop there:
   its tags and ledger keep the evidence it was promoted on.
3. Decide with ``decide_promotion`` (a plain function): absolute minimums,
   no regression against @champion measured now on the same eval data, and —
   before there is a champion — a real win over the untrained base model;
   the decision and its reasons become the version's tags.
4. Pass → @champion moves to the version and the old one becomes @previous,
   each move in the ledger, and the serving endpoint (``SLUICE_SERVING_URL``)
   is asked to swap now. Fail → the version is tagged rejected with the
   reasons; @champion is untouched. A gate miss is a normal outcome: the flow
   completes and says why.
5. Report champion and candidate side by side, with the decision and reasons.

Under ``promotion.rollout: canary`` a pass with a champion in place puts the version on trial instead:
it becomes @challenger (tagged with its share of traffic and start, the move in the ledger) and the
``watch-canary`` flow (flows/rollout.py) promotes or withdraws it on live traffic. Under ``shadow`` the
same, with the shadow sample as its share: it answers copies of requests in the background, never returned.
The first champion is promoted directly: there is nothing to compare it with.

Also here: the ``rollback`` flow (@champion back to @previous).
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from sluice.core import lineage
from sluice.core.config import SluiceConfig
from sluice.core.evaluation.results import EvaluationReport
from sluice.core.promotion.aliases import AliasMove
from sluice.core.promotion.gate import decide_on_report, decision_evidence
from sluice.core.promotion.report import PromotionResult, already_champion
from sluice.core.registry.client import CHAMPION, ModelVersionRef
from sluice.core.registry.tracking import TrackingTarget
from sluice.core.training.results import TrainingResult
from tasks import current_flow_run
from tasks.registry import (
    alias_version,
    link_prompts,
    promote_version,
    register_model_version,
    register_prompts,
    resolve_tracking_target,
    roll_back,
    tag_version,
)
from tasks.reports import report_promotion, report_rollback
from tasks.rollout import put_on_trial
from tasks.serving import reload_serving


@flow(name="promote", log_prints=True)
def promote(training: TrainingResult, evaluation: EvaluationReport,
            config: SluiceConfig = SluiceConfig()) -> PromotionResult:  # noqa: B008
    """Register the candidate, decide, and move @champion only on a pass."""
    target = resolve_tracking_target(config.tracking)
    tags = lineage.model_version_tags(current_flow_run(), repository=evaluation.eval_data.repository,
                                      data_commit=training.data_commit, training_run=training.run_id,
                                      evaluation_run=evaluation.candidate.run_id, config_hash=training.config_hash,
                                      training_key=training.key)
    # the prompts are part of the candidate: changed ones make a new version, which goes through the gate
    prompt_refs = register_prompts(target, config.registry, config.training, config.evaluation)
    version = register_model_version(target, config.registry, training.run_id,
                                     {**tags, **prompt_refs.version_tags()}, training.data_commit)
    link_prompts(target, config.registry, version.version, prompt_refs)
    if already_champion(alias_version(target, config.registry, CHAMPION), version.version):
        result = PromotionResult(version=version, decision=None, moves=[])  # no tag, no alias, no ledger entry
    else:
        result = decide_and_record(target, version, evaluation, config)
    get_run_logger().info("version %s: %s", version.version, result.summary())
    report_promotion(result, evaluation, config.evaluation.confidence)
    return result


def decide_and_record(target: TrackingTarget, version: ModelVersionRef, evaluation: EvaluationReport,
                      config: SluiceConfig) -> PromotionResult:
    """The gate's decision as the version's tags, then the alias moves it calls for."""
    decision = decide_on_report(evaluation, version.version, config.promotion)
    rollout = config.promotion.rollout
    on_trial = decision.promote and rollout in ("canary", "shadow") and evaluation.champion is not None
    share = config.promotion.shadow.sample if rollout == "shadow" else config.promotion.canary.share
    if on_trial:
        what = "answers" if rollout == "canary" else "also answers, in the background (never returned),"
        decision = decision.model_copy(update={"reasons": [*decision.reasons, (
            f"rollout {rollout}: version {version.version} goes on trial as @challenger and {what} {share:.0%} "
            "of the default model's traffic; watch-canary promotes or withdraws it")]})
    # tags first: a champion always carries the evidence it was promoted on, even if the run died right after
    # the move (a rerun finds it already champion and records nothing again)
    tag_version(target, config.registry, version.version,
                {lineage.DECISION: "challenger" if on_trial else decision.tag,
                 lineage.DECISION_REASONS: "\n".join(decision.reasons)})
    moves: list[AliasMove] = []
    if on_trial:
        moves = put_on_trial(target, config.registry, version.version, share,
                             decision_evidence(decision, evaluation), rollout)  # type: ignore[arg-type]
        if moves:
            reload_serving(None)  # the endpoint serves @challenger beside @champion once it looks again
    elif decision.promote:
        moves = promote_version(target, config.registry, version.version, decision_evidence(decision, evaluation))
        if moves:
            reload_serving(version.version)
    return PromotionResult(version=version, decision=decision, moves=moves)


@flow(name="rollback", log_prints=True)
def rollback(reason: str = "manual rollback", config: SluiceConfig = SluiceConfig()) -> list[AliasMove]:  # noqa: B008
    """Move @champion back to @previous, recorded in the ledger."""
    moves = roll_back(resolve_tracking_target(config.tracking), config.registry, reason)
    reload_serving(next((move.to_version for move in moves if move.alias == "champion"), None))
    report_rollback(config.registry.model_name, reason, moves)
    return moves
