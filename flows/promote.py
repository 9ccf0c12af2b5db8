"""Register the candidate and pass it through the gate.

1. Register the training run's model as a version, with its lineage (once:
   a rerun finds it).
2. Decide with ``decide_promotion`` (a plain function): absolute minimums,
   no regression against @champion measured now on the same eval data, and —
   before there is a champion — a real win over the untrained base model.
3. Pass → @champion moves to the version and the old one becomes @previous,
   each move in the ledger, and the serving endpoint (``SLUICE_SERVING_URL``)
   is asked to swap now. Fail → the version is tagged rejected with the
   reasons; @champion is untouched. A gate miss is a normal outcome: the flow
   completes and says why.
4. Report champion and candidate side by side, with the decision and reasons.

Also here: the ``rollback`` flow (@champion back to @previous).
"""

from __future__ import annotations

import math

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel

from flows.evaluate import EvaluationReport
from sluice.config import SluiceConfig
from sluice.promotion import Decision, Evaluated, decide_promotion
from tasks.evaluate import EvaluatedModel
from tasks.finetune import TrainingResult, git_sha
from tasks.registry import ModelVersionRef, promote_version, register_model_version, roll_back, tag_version
from tasks.serving import reload_serving


class PromotionResult(BaseModel):
    version: ModelVersionRef
    decision: Decision
    moves: list[tuple[str, str | None, str | None]]  # (alias, from version, to version)


@flow(name="promote", log_prints=True)
def promote(training: TrainingResult, evaluation: EvaluationReport,
            config: SluiceConfig = SluiceConfig()) -> PromotionResult:  # noqa: B008
    """Register the candidate, decide, and move @champion only on a pass."""
    version = register_model_version(config, training.run_id, lineage_tags(training, evaluation))
    decision = decide(evaluation, version.version, config)
    moves: list[tuple[str, str | None, str | None]] = []
    if decision.promote:
        moves = promote_version(config, version.version, evidence(decision, evaluation))
        if moves:
            reload_serving(version.version)
    tag_version(config, version.version, {"sluice.decision": decision_tag(decision),
                                          "sluice.decision_reasons": "\n".join(decision.reasons)})
    get_run_logger().info("version %s: %s", version.version, decision.summary())
    create_markdown_artifact(markdown=promotion_report(version, decision, evaluation, moves, config),
                             key="promotion", description=decision.summary())
    return PromotionResult(version=version, decision=decision, moves=moves)


@flow(name="rollback", log_prints=True)
def rollback(reason: str = "manual rollback", config: SluiceConfig = SluiceConfig()) -> list[tuple[str, str | None, str | None]]:  # noqa: B008,E501
    """Move @champion back to @previous, recorded in the ledger."""
    moves = roll_back(config, reason)
    reload_serving(next((new for alias, _, new in moves if alias == "champion"), None))
    lines = [f"# Rollback of `{config.registry.model_name}`", "", f"reason: {reason}", ""]
    lines += [f"- @{alias}: {old or '—'} → {new or '—'}" for alias, old, new in moves]
    create_markdown_artifact(markdown="\n".join(lines) + "\n", key="rollback", description=reason)
    return moves


# ------------------------------------------------------------------ helpers (plain functions)


def _evaluated(model: EvaluatedModel | None, label: str, version: str | None = None) -> Evaluated | None:
    return Evaluated(label=label, metrics=model.metrics, version=version or model.version) if model else None


def decide(evaluation: EvaluationReport, candidate_version: str, config: SluiceConfig) -> Decision:
    champion = _evaluated(evaluation.champion, f"version {evaluation.champion.version}"
                          if evaluation.champion else "champion")
    return decide_promotion(
        _evaluated(evaluation.candidate, f"version {candidate_version}", candidate_version),  # type: ignore[arg-type]
        champion, config.promotion,
        champion_comparisons=evaluation.comparisons if evaluation.champion else None,
        base_model=_evaluated(evaluation.base_model, "base model"),
        base_comparisons=evaluation.comparisons if evaluation.base_model else None,
    )


def decision_tag(decision: Decision) -> str:
    if decision.mode == "dry-run":
        return f"dry-run-{decision.outcome}"
    return "promoted" if decision.outcome == "promote" else "rejected"


def lineage_tags(training: TrainingResult, evaluation: EvaluationReport) -> dict[str, str]:
    from prefect.runtime import flow_run

    return {"lakefs.commit": training.data_commit, "lakefs.eval_commit": evaluation.eval_data.commit_id,
            "lakefs.repository": evaluation.eval_data.repository, "mlflow.training_run": training.run_id,
            "mlflow.evaluation_run": evaluation.candidate.run_id, "prefect.flow_run_id": str(flow_run.get_id()),
            "sluice.config_hash": training.config_hash, "sluice.training_key": training.key,
            "git.sha": git_sha()}


def evidence(decision: Decision, evaluation: EvaluationReport) -> dict:
    return {"decision": decision.model_dump(mode="json"), "eval_commit": evaluation.eval_data.commit_id,
            "candidate": evaluation.candidate.model_dump(mode="json"),
            "champion": evaluation.champion.model_dump(mode="json") if evaluation.champion else None,
            "comparisons": {k: v.model_dump(mode="json") for k, v in evaluation.comparisons.items()}}


def _number(value: float | None) -> str:
    return "not measured" if value is None or math.isnan(value) else f"{value:.3f}"


def promotion_report(version: ModelVersionRef, decision: Decision, evaluation: EvaluationReport,
                     moves: list[tuple[str, str | None, str | None]], config: SluiceConfig) -> str:
    reference = evaluation.champion or evaluation.base_model
    reference_label = (f"champion (version {evaluation.champion.version})" if evaluation.champion
                       else "base model (no champion yet)")
    verdict = {"promote": "PROMOTED" if decision.promote else "would be promoted (dry-run)",
               "reject": "REJECTED"}[decision.outcome]
    lines = [f"# {config.registry.model_name} version {version.version}: {verdict}", "",
             f"- eval data: `lakefs://{evaluation.eval_data.repository}/{evaluation.eval_data.commit_id}/` "
             f"({evaluation.candidate.samples} samples)",
             f"- candidate evaluation run `{evaluation.candidate.run_id}`"
             + (f"; {reference_label} evaluation run `{reference.run_id}`" if reference else ""), "",
             f"| metric | candidate | {reference_label} | difference ({config.evaluation.confidence:.0%} CI) |",
             "|---|---|---|---|"]
    for metric, value in sorted(evaluation.candidate.metrics.items()):
        comparison = evaluation.comparisons.get(metric)
        ci = (f"{comparison.mean_difference:+.3f} [{comparison.low:+.3f}, {comparison.high:+.3f}]"
              if comparison and not math.isnan(comparison.mean_difference) else "—")
        lines.append(f"| {metric} | {_number(value)} | "
                     f"{_number(reference.metrics.get(metric)) if reference else '—'} | {ci} |")
    lines += ["", f"**Decision:** {decision.summary()}", ""]
    lines += [f"- {reason}" for reason in decision.reasons]
    if moves:
        lines += ["", "Alias moves:"] + [f"- @{alias}: {old or '—'} → {new}" for alias, old, new in moves]
    return "\n".join(lines) + "\n"
